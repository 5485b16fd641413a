#include "gradacc/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <ATen/ops/empty.h>
#include <ATen/ops/isfinite.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/parse.h"

namespace gradacc {
namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // the format's own limit is 100 MB

const std::vector<std::pair<std::string, at::ScalarType>>& dtype_names() {
  static const std::vector<std::pair<std::string, at::ScalarType>> names = {
      {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"I64", at::kLong},
      {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},  {"U8", at::kByte},       {"BOOL", at::kBool}};
  return names;
}

std::string dtype_name(at::ScalarType t) {
  for (const auto& [name, type] : dtype_names()) {
    if (type == t) return name;
  }
  throw FormatError(fmt::format("safetensors cannot store dtype {}", c10::toString(t)));
}

std::optional<at::ScalarType> dtype_of(const std::string& name) {
  for (const auto& [n, type] : dtype_names()) {
    if (n == name) return type;
  }
  return std::nullopt;
}

// Writes all bytes to fd or throws.
void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw FormatError(fmt::format("{}: write failed: {}", path, std::strerror(errno)));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// CRC-32 of the header's canonical JSON (without the checksum entry) followed by every tensor's
// bytes in file order: a flipped bit anywhere that matters (a value, a shape, a metadata field)
// changes it.
class Crc {
 public:
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const Bytef*>(data);
    while (n > 0) {  // zlib takes uInt lengths
      const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
      value_ = ::crc32(value_, p, chunk);
      p += chunk;
      n -= chunk;
    }
  }
  std::string hex() const { return fmt::format("{:08x}", value_); }

 private:
  uLong value_ = ::crc32(0L, Z_NULL, 0);
};

}  // namespace

void save_safetensors(const std::string& path, const TensorMap& tensors, const StringMap& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<at::Tensor> blobs;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {  // std::map: sorted names, a stable file
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = c.nbytes();
    header[name] = {
        {"dtype", dtype_name(c.scalar_type())}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    blobs.push_back(std::move(c));
  }
  StringMap meta = metadata;
  meta.erase(kChecksumKey);
  if (!meta.empty()) header["__metadata__"] = meta;
  Crc crc;
  const std::string canonical = header.dump();
  crc.add(canonical.data(), canonical.size());
  for (const at::Tensor& b : blobs) crc.add(b.data_ptr(), b.nbytes());
  header["__metadata__"][kChecksumKey] = crc.hex();
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  const uint64_t n = text.size();

  const std::filesystem::path target(path);
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw FormatError(fmt::format("{}: cannot create: {}", tmp, std::strerror(errno)));
  try {
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    write_all(fd, len, 8, tmp);
    write_all(fd, text.data(), text.size(), tmp);
    for (const at::Tensor& b : blobs) write_all(fd, b.data_ptr(), b.nbytes(), tmp);
    if (::fsync(fd) != 0) throw FormatError(fmt::format("{}: fsync failed: {}", tmp, std::strerror(errno)));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw FormatError(fmt::format("{}: cannot move into place: {}", path, err));
  }
  // The rename itself is durable only once the directory entry is on disk.
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

TensorMap load_safetensors(const std::string& path, StringMap* metadata, ReadInfo* info) {
  if (info) *info = ReadInfo{};
  if (const std::string problem = input_file_problem(path); !problem.empty()) {
    throw FormatError(fmt::format("{}: {}", shown(path, 200), problem));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(fmt::format("{}: cannot open for reading", path));
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8)
    throw FormatError(fmt::format("{}: too short to be a safetensors file ({} bytes)", path, file_size));
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n > kMaxHeader || n > file_size - 8) {
    throw FormatError(fmt::format("{}: header length {} does not fit a {}-byte file", path, n, file_size));
  }
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(fmt::format("{}: header is not valid JSON", path));
  }
  if (!header.is_object()) throw FormatError(fmt::format("{}: header is not a JSON object", path));

  const uint64_t data_size = file_size - 8 - n;
  struct Entry {
    std::string name;
    at::ScalarType type;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw FormatError(fmt::format("{}: __metadata__ is not an object", path));
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) throw FormatError(fmt::format("{}: metadata '{}' is not a string", path, k));
        if (metadata) (*metadata)[k] = s.get<std::string>();
      }
      continue;
    }
    try {
      Entry e{name, at::kFloat, {}, 0, 0};
      const auto type = dtype_of(v.at("dtype").get<std::string>());
      if (!type)
        throw FormatError(fmt::format("{}: tensor '{}' has unsupported dtype {}", path, name, v.at("dtype").dump()));
      e.type = *type;
      uint64_t numel = 1;
      for (const auto& d : v.at("shape")) {
        const int64_t dim = d.get<int64_t>();
        if (dim < 0 || dim > (int64_t{1} << 40))
          throw FormatError(fmt::format("{}: tensor '{}' has dimension {}", path, name, dim));
        e.shape.push_back(dim);
        numel *= static_cast<uint64_t>(dim);
      }
      const auto& off = v.at("data_offsets");
      e.begin = off.at(0).get<uint64_t>();
      e.end = off.at(1).get<uint64_t>();
      if (off.size() != 2 || e.begin > e.end || e.end > data_size) {
        throw FormatError(fmt::format("{}: tensor '{}' byte range [{}, {}) lies outside the {} data bytes", path, name,
                                      e.begin, e.end, data_size));
      }
      if (e.end - e.begin != numel * c10::elementSize(e.type)) {
        throw FormatError(fmt::format("{}: tensor '{}' has {} bytes for shape {} of {}", path, name, e.end - e.begin,
                                      v.at("shape").dump(), v.at("dtype").get<std::string>()));
      }
      entries.push_back(std::move(e));
    } catch (const nlohmann::json::exception&) {
      throw FormatError(fmt::format("{}: tensor '{}' has a malformed header entry", path, name));
    }
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  // Files written by gradacc carry a checksum; others (Python's safetensors) are read unchecked.
  std::optional<std::string> expected_crc;
  Crc crc;
  if (auto m = header.find("__metadata__"); m != header.end() && m->contains(kChecksumKey)) {
    expected_crc = (*m)[kChecksumKey].get<std::string>();
    m->erase(kChecksumKey);
    if (m->empty()) header.erase("__metadata__");
    const std::string canonical = header.dump();
    crc.add(canonical.data(), canonical.size());
    if (metadata) metadata->erase(kChecksumKey);
  }
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].begin < entries[i - 1].end) {
      throw FormatError(fmt::format("{}: tensors '{}' and '{}' overlap", path, entries[i - 1].name, entries[i].name));
    }
  }
  // The format's data section is exactly the tensors, back to back (as Python's reader insists):
  // bytes in a gap or after the last tensor are a damaged or tampered file.
  uint64_t covered = 0;
  for (const Entry& e : entries) {
    if (e.begin != covered)
      throw FormatError(
          fmt::format("{}: {} bytes before tensor '{}' belong to no tensor", path, e.begin - covered, e.name));
    covered = e.end;
  }
  if (covered != data_size)
    throw FormatError(
        fmt::format("{}: {} bytes after the last tensor's data belong to no tensor", path, data_size - covered));

  TensorMap out;
  for (const Entry& e : entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.type));
    in.seekg(static_cast<std::streamoff>(8 + n + e.begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) throw FormatError(fmt::format("{}: truncated while reading tensor '{}'", path, e.name));
    if (expected_crc) crc.add(t.data_ptr(), t.nbytes());
    out.emplace(e.name, std::move(t));
  }
  if (expected_crc && crc.hex() != *expected_crc) {
    throw FormatError(fmt::format("{}: checksum mismatch (stored {}, computed {}): the file is corrupted", path,
                                  shown(*expected_crc), crc.hex()));
  }
  if (info) info->verified = expected_crc.has_value();
  return out;
}

TensorMap module_state(const torch::nn::Module& module) {
  TensorMap state;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) state.emplace(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) state.emplace(item.key(), item.value());
  return state;
}

void save_module(const std::string& path, const torch::nn::Module& module, const StringMap& metadata) {
  save_safetensors(path, module_state(module), metadata);
}

void check_module_state(const TensorMap& file, const torch::nn::Module& module, const std::string& source) {
  const TensorMap state = module_state(module);
  for (const auto& [name, t] : state) {
    auto it = file.find(name);
    if (it == file.end()) throw FormatError(fmt::format("{}: has no tensor '{}' that the model needs", source, name));
    if (it->second.sizes() != t.sizes()) {
      throw FormatError(fmt::format("{}: tensor '{}' has shape {}, the model needs {}", source, name,
                                    fmt::join(it->second.sizes(), "x"), fmt::join(t.sizes(), "x")));
    }
    const at::ScalarType have = it->second.scalar_type(), need = t.scalar_type();
    const bool fits = at::isFloatingType(need) ? at::isFloatingType(have) : have == need;
    if (!fits) {
      throw FormatError(fmt::format("{}: tensor '{}' is {}, the model holds {} (not converted)", source, name,
                                    c10::toString(have), c10::toString(need)));
    }
    if (at::isFloatingType(have) && !at::isfinite(it->second).all().item<bool>()) {
      throw FormatError(fmt::format("{}: tensor '{}' holds non-finite values (inf or NaN)", source, name));
    }
  }
  for (const auto& [name, t] : file) {
    if (!state.count(name))
      throw FormatError(fmt::format("{}: holds tensor '{}' that the model does not have", source, name));
  }
}

void load_module_state(const TensorMap& file, torch::nn::Module& module, const std::string& source) {
  check_module_state(file, module, source);
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : module_state(module)) t.copy_(file.at(name));
}

ReadInfo load_module(const std::string& path, torch::nn::Module& module) {
  ReadInfo info;
  load_module_state(load_safetensors(path, nullptr, &info), module, path);
  return info;
}

}  // namespace gradacc
