// JSON config files through the options table: nested objects become dotted keys, each key is
// looked up among every row's names and aliases, and its value is checked against the row's type.
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/foreign_config.h"
#include "app/options_table.h"
#include "gradacc/errors.h"

namespace gradacc {
namespace {

using json = nlohmann::json;

// Edit distance, for suggesting the key that was probably meant.
size_t distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string suggestion(const std::string& key, ConfigFormat format) {
  std::string best;
  size_t best_d = 4;  // suggest only near misses
  for (const Option& o : option_table()) {
    for (const auto* names : {&o.keys, format == ConfigFormat::kHuggingFace ? &o.hf : &o.deepspeed}) {
      for (const std::string& k : *names) {
        const size_t d = distance(key, k);
        if (d < best_d) best_d = d, best = k;
      }
    }
  }
  return best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best);
}

// The value of `j` as the row's type; std::invalid_argument saying what was expected.
OptionValue json_value(const Option& o, const json& j, bool own_key) {
  switch (o.type) {
    case OptionType::kIntOrWord:
      if (j.is_string() && own_key) {
        if (j.get<std::string>().empty()) throw std::invalid_argument("must not be empty");
        return j.get<std::string>();
      }
      // DeepSpeed's and HF's "auto" means "filled in by the HF Trainer": not gradacc's word.
      [[fallthrough]];
    case OptionType::kInt:
      if (!j.is_number_integer()) throw std::invalid_argument("an integer is expected");
      if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw std::invalid_argument("the integer does not fit 64 bits");
      }
      return j.get<int64_t>();
    case OptionType::kFloat:
      if (!j.is_number()) throw std::invalid_argument("a number is expected");
      return j.get<double>();
    case OptionType::kBool:
    case OptionType::kSwitch:
      if (!j.is_boolean()) throw std::invalid_argument("true or false is expected");
      return j.get<bool>();
    case OptionType::kString:
      if (!j.is_string()) throw std::invalid_argument("a string is expected");
      if (j.get<std::string>().empty()) throw std::invalid_argument("must not be empty");
      return j.get<std::string>();
    case OptionType::kFloatPair:
      if (!j.is_array() || j.size() != 2 || !j[0].is_number() || !j[1].is_number()) {
        throw std::invalid_argument("two numbers [X, Y] are expected");
      }
      return std::make_pair(j[0].get<double>(), j[1].get<double>());
  }
  throw std::invalid_argument("unknown option type");
}

// Every leaf of `j` as (dotted key, value). An object under a key that a row takes as a whole
// ("optimizer": "adamw") is not a leaf when it is an object ("optimizer": {"type": ...}).
void flatten(const json& j, const std::string& prefix, std::vector<std::pair<std::string, const json*>>& out) {
  for (const auto& [k, v] : j.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object())
      flatten(v, key, out);
    else
      out.emplace_back(key, &v);
  }
}

}  // namespace

void apply_config_file(const std::string& path, JobConfig& c, std::optional<ConfigFormat> asked,
                       std::vector<KeyVerdict>* verdicts) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw ConfigError(fmt::format("{}: cannot read config file", shown(path, 200)));
  if (!S_ISREG(st.st_mode)) throw ConfigError(fmt::format("{}: the config must be a regular file", shown(path, 200)));
  if (st.st_size > (16 << 20))
    throw ConfigError(
        fmt::format("{}: a config file of {} bytes is too large (16 MiB at most)", shown(path, 200), st.st_size));
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("{}: cannot read config file", shown(path, 200)));
  constexpr int kMaxDepth = 32;
  // Depth, and keys given twice in one object (a JSON parser would silently keep the last).
  std::vector<std::set<std::string>> keys_seen;
  const json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxDepth)
      throw ConfigError(fmt::format("{}: nested deeper than {} levels", shown(path, 200), kMaxDepth));
    if (event == json::parse_event_t::object_start) keys_seen.emplace_back();
    if (event == json::parse_event_t::object_end && !keys_seen.empty()) keys_seen.pop_back();
    if (event == json::parse_event_t::key && !keys_seen.empty() &&
        !keys_seen.back().insert(parsed.get<std::string>()).second)
      throw ConfigError(fmt::format("{}: the key \"{}\" is given twice in one object", shown(path, 200),
                                    shown(parsed.get<std::string>(), 80)));
    return true;
  };
  json root;
  try {
    root = json::parse(in, limit_depth);
  } catch (const json::parse_error& e) {
    throw ConfigError(fmt::format("{}: not valid JSON (byte {})", shown(path, 200), e.byte));
  } catch (const json::exception&) {  // a number beyond double's range, and the like
    throw ConfigError(fmt::format("{}: not valid JSON (a value out of range)", shown(path, 200)));
  }
  if (!root.is_object()) throw ConfigError(fmt::format("{}: the config must be a JSON object", shown(path, 200)));

  // Whose keys: as asked, or detected; a DeepSpeed or HF file starts from that system's defaults.
  const ConfigFormat format = asked.value_or(foreign::detect(root));
  c.config_format = to_string(format);
  foreign::start_from_defaults(format, root, c);
  std::vector<std::pair<std::string, const json*>> leaves;
  flatten(root, "", leaves);
  // A key's verdict: recorded when asked for, else a refusal is thrown naming the file.
  const auto verdict = [&](const std::string& key, const char* what, const std::string& detail) {
    if (verdicts) {
      verdicts->push_back({key, what, detail});
    } else if (std::string_view(what) == "refused") {
      throw ConfigError(fmt::format("{}: {}", shown(path, 200), detail));
    }
  };
  for (const auto& [key, value] : leaves) {
    const Option* o = find_option_by_key(key, format);
    if (o == nullptr) {
      const size_t ignored = c.foreign.ignored.size(), notes = c.foreign.notes.size(), mapped = c.foreign.mapped.size();
      const std::optional<std::string> refused = foreign::unmapped_key(format, key, *value, c);
      if (!refused) {  // known there: changes nothing here, or mapped (with a note when it differs)
        const bool noted = c.foreign.notes.size() > notes, as_is = c.foreign.mapped.size() > mapped;
        verdict(key, noted || as_is ? "mapped" : "ignored",
                noted                                ? c.foreign.notes.back()
                : as_is                              ? c.foreign.mapped.back()
                : c.foreign.ignored.size() > ignored ? "changes nothing in gradacc's training"
                                                     : "read");
        continue;
      }
      verdict(key, "refused",
              !refused->empty() ? *refused : fmt::format("unknown key '{}'{}", shown(key), suggestion(key, format)));
      continue;
    }
    if (format == ConfigFormat::kHuggingFace && value->is_null()) {  // TrainingArguments' "not set"
      verdict(key, "ignored", "null: not set");
      continue;
    }
    try {
      const bool own_key = std::find(o->keys.begin(), o->keys.end(), key) != o->keys.end();
      o->set(c, json_value(*o, *value, own_key));
      verdict(key, own_key ? "honoured" : "mapped", o->flag.empty() ? o->help : o->flag);
    } catch (const std::invalid_argument& e) {
      const std::string v = value->is_primitive() ? value->dump() : (value->is_array() ? "[…]" : "{…}");
      verdict(key, "refused", fmt::format("key '{}' = {}: {}", shown(key), shown(v), shown(e.what(), 300)));
    }
  }
  try {
    foreign::finish(format, c);
  } catch (const std::invalid_argument& e) {
    verdict("(the file as a whole)", "refused", e.what());
  }
}

std::string explain_config_file(const std::string& path, std::optional<ConfigFormat> format) {
  JobConfig c = default_job();
  std::vector<KeyVerdict> verdicts;
  apply_config_file(path, c, format, &verdicts);
  std::string s = fmt::format("{} ({} keys, read as {}):\n\n| key | verdict | what gradacc does |\n|---|---|---|\n",
                              shown(path, 200), verdicts.size(), c.config_format);
  for (const KeyVerdict& v : verdicts) {
    std::string detail = v.detail;
    std::replace(detail.begin(), detail.end(), '|', '/');
    s += fmt::format("| `{}` | {} | {} |\n", shown(v.key, 80), v.verdict, detail);
  }
  return s;
}

}  // namespace gradacc
