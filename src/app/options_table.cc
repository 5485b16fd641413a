// The options table (app/options_table.h): every option of gradacc's jobs, one row each, assembled
// from the rows by concern (option_rows_model.cc, option_rows_train.cc, option_rows_run.cc, and the
// DeepSpeed / Hugging Face rows of foreign_options.cc). A new option is one row in its concern's
// file; flags, config keys and docs/config.md all come from it.
#include "app/options_table.h"

#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "app/foreign_config.h"
#include "app/option_rows.h"
#include "gradacc/errors.h"

namespace gradacc {
namespace {

std::vector<Option> build_table() {
  std::vector<Option> t;
  rows::add_model_and_batch_rows(t);
  rows::add_optimizer_and_precision_rows(t);
  rows::add_run_rows(t);
  add_foreign_rows(t);
  add_foreign_columns(t);
  return t;
}

}  // namespace

const std::vector<Option>& option_table() {
  static const std::vector<Option> table = build_table();
  return table;
}

const Option* find_option_by_flag(const std::string& flag) {
  for (const Option& o : option_table()) {
    if (o.flag == flag) return &o;
  }
  return nullptr;
}

const Option* find_option_by_key(const std::string& key, ConfigFormat format) {
  const auto has = [&](const std::vector<std::string>& keys) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
  };
  for (const Option& o : option_table()) {
    if (has(o.keys)) return &o;
  }
  for (const Option& o : option_table()) {
    // gradacc's own files take DeepSpeed's names as well (as they always have).
    if (format != ConfigFormat::kHuggingFace && has(o.deepspeed)) return &o;
    if (format == ConfigFormat::kHuggingFace && has(o.hf)) return &o;
  }
  return nullptr;
}

void apply_flag(JobConfig& c, const Option& o, const std::string& text) {
  try {
    OptionValue v;
    switch (o.type) {
      case OptionType::kInt: v = parse_int(text); break;
      case OptionType::kFloat: v = parse_float(text); break;
      case OptionType::kBool: v = rows::parse_bool(text); break;
      case OptionType::kSwitch: v = text.empty() ? true : rows::parse_bool(text); break;
      case OptionType::kString:
        if (text.empty()) throw std::invalid_argument("must not be empty");
        v = text;
        break;
      case OptionType::kFloatPair: v = rows::parse_pair(text); break;
      case OptionType::kIntOrWord:
        if (text.empty()) throw std::invalid_argument("must not be empty");
        if (text.find_first_not_of("-0123456789") == std::string::npos)
          v = parse_int(text);
        else
          v = text;
        break;
    }
    o.set(c, v);
  } catch (const std::invalid_argument& e) {
    // The parsers of names quote the value given: shown() keeps the message on one line.
    throw ConfigError(fmt::format("{}: {}", o.flag, shown(e.what(), 300)));
  }
}

namespace {

// A table cell's text: '|' would end the cell, even inside backquotes (GitHub's tables).
std::string markdown_cell(const std::string& text) {
  std::string out;
  for (const char ch : text) {
    if (ch == '|') out += '\\';
    out += ch;
  }
  return out;
}

}  // namespace

std::string options_markdown() {
  const JobConfig defaults = default_job();
  const auto list = [](const std::vector<std::string>& keys) {
    std::string out;
    for (const std::string& k : keys) out += (out.empty() ? "" : ", ") + fmt::format("`{}`", k);
    return out;
  };
  std::string s = "| flag | config key | DeepSpeed | Hugging Face | default | meaning |\n|---|---|---|---|---|---|\n";
  for (const Option& o : option_table()) {
    const std::string flag =
        o.flag.empty() ? "" : fmt::format("`{}{}`", o.flag, o.value_hint.empty() ? "" : " " + o.value_hint);
    s += fmt::format("| {} | {} | {} | {} | {} | {} |\n", markdown_cell(flag), markdown_cell(list(o.keys)),
                     markdown_cell(list(o.deepspeed)), markdown_cell(list(o.hf)),
                     markdown_cell(o.keys.empty() ? "" : o.show(defaults)), markdown_cell(o.help));
  }
  return s;
}

std::string option_values_markdown(const JobConfig& c) {
  std::string s = "| option | value |\n|---|---|\n";
  for (const Option& o : option_table()) {
    if (!o.flag.empty() && !o.keys.empty()) s += fmt::format("| `{}` | {} |\n", o.flag, markdown_cell(o.show(c)));
  }
  return s;
}

}  // namespace gradacc
