// gradacc_fuzz: a bounded random fuzzer for every reader of untrusted input. It mutates seed inputs
// (bit flips, interesting bytes and tokens, inserts, deletions, truncation, splices), feeds each
// mutant to one reader, and accepts only gradacc's own one-line errors. Anything else — another
// exception type, a message of several lines, a sanitizer report (the CI build runs it under
// AddressSanitizer and UndefinedBehaviorSanitizer), a crash — is a finding: the input is saved as
// fuzz-finding-<target>.bin and the run exits 1.
//
// Usage: gradacc_fuzz TARGET SECONDS RNG_SEED SEED_FILE...
//   TARGET  config | flags | safetensors | checkpoint | idx | text
// The seeds and the RNG seed make a run reproducible (up to the time bound).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include "app/options_table.h"
#include "base/parse.h"
#include "builtin/idx.h"
#include "builtin/models.h"
#include "builtin/text.h"
#include "checkpoint/checkpoint.h"
#include "gradacc/errors.h"
#include "gradacc/optimizer.h"
#include "gradacc/safetensors.h"
#include "train/run_plan.h"

namespace {

using namespace gradacc;
using Bytes = std::string;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Mutations that reach deep into parsers: JSON and safetensors tokens, IDX magic numbers,
// numbers at the edges of their types, invalid UTF-8.
const std::vector<Bytes> kTokens = {"{",
                                    "}",
                                    "[",
                                    "]",
                                    "\"",
                                    ",",
                                    ":",
                                    "null",
                                    "true",
                                    "-0",
                                    "1e308",
                                    "-1",
                                    "0",
                                    "9",
                                    "18446744073709551615",
                                    "9223372036854775808",
                                    "\xff\xff\xff\xff",
                                    "\x00\x00\x08",
                                    "\xc3",
                                    "\xed\xa0\x80",
                                    "\n",
                                    "'",
                                    "\"dtype\"",
                                    "\"F32\"",
                                    "\"I64\"",
                                    "\"shape\"",
                                    "\"data_offsets\"",
                                    "\"__metadata__\"",
                                    "gradacc_crc32",
                                    "nan"};

Bytes mutate(const std::vector<Bytes>& seeds, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  Bytes b = seeds[pick(seeds.size())];
  const int rounds = 1 + static_cast<int>(pick(8));
  for (int r = 0; r < rounds; ++r) {
    switch (pick(7)) {
      case 0:  // flip a bit
        if (!b.empty()) b[pick(b.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1:  // an interesting byte
        if (!b.empty()) b[pick(b.size())] = "\x00\xff\x7f\x80\n\"{[0-9"[pick(11)];
        break;
      case 2: {  // insert a token
        const Bytes& t = kTokens[pick(kTokens.size())];
        b.insert(pick(b.size() + 1), t);
        break;
      }
      case 3:  // delete a chunk
        if (!b.empty()) {
          const size_t at = pick(b.size());
          b.erase(at, 1 + pick(std::min<size_t>(64, b.size() - at)));
        }
        break;
      case 4:  // truncate
        b.resize(pick(b.size() + 1));
        break;
      case 5: {  // duplicate a chunk
        if (b.empty()) break;
        const size_t at = pick(b.size());
        const Bytes chunk = b.substr(at, 1 + pick(32));
        b.insert(pick(b.size() + 1), chunk);
        break;
      }
      default: {  // splice with another seed
        const Bytes& other = seeds[pick(seeds.size())];
        if (other.empty()) break;
        const size_t cut = pick(b.size() + 1), from = pick(other.size());
        b = b.substr(0, cut) + other.substr(from, pick(other.size() - from + 1));
        break;
      }
    }
  }
  return b;
}

// One input through one reader. Returns normally for success and for gradacc's own errors.
void run_target(const std::string& target, const std::string& path, const Bytes& bytes) {
  if (target == "config") {
    JobConfig c = default_job();
    apply_config_file(path, c);
    DistEnv env;
    resolve_run(job_train_options(c), env, 1000);
  } else if (target == "flags") {
    // The first line names a flag (by index into the table), the rest is its value.
    const auto nl = bytes.find('\n');
    const auto& table = option_table();
    const size_t row = bytes.empty() ? 0 : static_cast<unsigned char>(bytes[0]) % table.size();
    const std::string value = nl == std::string::npos ? bytes : bytes.substr(nl + 1);
    JobConfig c = default_job();
    if (!table[row].flag.empty()) apply_flag(c, table[row], value);
    try {
      parse_int(value);
    } catch (const std::invalid_argument&) {
    }
    try {
      parse_float(value);
    } catch (const std::invalid_argument&) {
    }
    DistEnv env;
    resolve_run(job_train_options(c), env, 1000);
  } else if (target == "safetensors") {
    StringMap meta;
    const TensorMap t = load_safetensors(path, &meta);
    auto model = make_model({ModelKind::kMlp}, 10);
    check_module_state(t, *model, path);
  } else if (target == "checkpoint") {
    auto model = make_model({ModelKind::kMlp}, 10);
    auto optimizer = make_optimizer(model->parameters(), OptimizerOptions());
    load_checkpoint(path, *model, *optimizer, {});
  } else if (target == "idx") {
    try {
      read_idx_u8(path, 1);  // labels
    } catch (const DataError&) {
      read_idx_u8(path, 3);  // images
    }
  } else if (target == "text") {
    const TextSplits s = load_text(path, 16);
    if (s.train->size() > 0) s.train->gather({0});
  } else {
    throw std::runtime_error("unknown target");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: gradacc_fuzz config|flags|safetensors|checkpoint|idx|text SECONDS RNG_SEED SEED_FILE...\n";
    return 2;
  }
  const std::string target = argv[1];
  const double seconds = std::stod(argv[2]);
  std::mt19937_64 rng(std::stoull(argv[3]));
  std::vector<Bytes> seeds;
  for (int i = 4; i < argc; ++i) seeds.push_back(read_file(argv[i]));
  const std::string path =
      (std::filesystem::temp_directory_path() / ("gradacc_fuzz_" + std::to_string(::getpid()) + "_" + target)).string();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int64_t runs = 0, accepted = 0, refused = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const Bytes input = runs < static_cast<int64_t>(seeds.size()) ? seeds[runs] : mutate(seeds, rng);
    ++runs;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << input;
    std::string finding;
    try {
      run_target(target, path, input);
      ++accepted;
    } catch (const ConfigError& e) {
      ++refused;
      if (std::string(e.what()).find('\n') != std::string::npos) finding = "a ConfigError of several lines";
    } catch (const PlanError& e) {
      ++refused;
    } catch (const DataError& e) {
      ++refused;
      if (std::string(e.what()).find('\n') != std::string::npos) finding = "a DataError of several lines";
    } catch (const FormatError& e) {
      ++refused;
      if (std::string(e.what()).find('\n') != std::string::npos) finding = "a FormatError of several lines";
    } catch (const CheckpointError& e) {
      ++refused;
      if (std::string(e.what()).find('\n') != std::string::npos) finding = "a CheckpointError of several lines";
    } catch (const c10::Error& e) {
      finding = std::string("a LibTorch error escaped: ") + e.what_without_backtrace();
    } catch (const std::exception& e) {
      finding = std::string("an unexpected exception: ") + e.what();
    }
    if (!finding.empty()) {
      const std::string out = "fuzz-finding-" + target + ".bin";
      std::ofstream(out, std::ios::binary) << input;
      std::cerr << "gradacc_fuzz " << target << ": " << finding.substr(0, finding.find('\n')) << " (input saved as "
                << out << ")\n";
      std::filesystem::remove(path);
      return 1;
    }
  }
  std::filesystem::remove(path);
  std::cout << "gradacc_fuzz " << target << ": " << runs << " inputs in " << seconds << " s, " << accepted
            << " accepted, " << refused << " refused with one line, 0 findings\n";
  return 0;
}
