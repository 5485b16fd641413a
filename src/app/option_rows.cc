// The row builders of option_rows.h: each turns a field into the setter and the shown value of a row.
#include "app/option_rows.h"

#include <algorithm>

namespace gradacc::rows {
namespace {

std::string number_text(double v) { return fmt::format("{}", v); }
std::string on_off(bool b) { return b ? "on" : "off"; }

Option row(std::string flag, std::vector<std::string> keys, OptionType type, OptionScope scope, std::string hint,
           std::string help, std::function<void(JobConfig&, const OptionValue&)> set,
           std::function<std::string(const JobConfig&)> show) {
  return {std::move(flag), std::move(keys), type,           scope,
          std::move(hint), std::move(help), std::move(set), std::move(show)};
}

}  // namespace

bool parse_bool(const std::string& s) {
  if (s == "on" || s == "true") return true;
  if (s == "off" || s == "false") return false;
  throw std::invalid_argument(fmt::format("'{}' is not on or off", shown(s)));
}

std::pair<double, double> parse_pair(const std::string& s) {
  const auto comma = s.find(',');
  if (comma == std::string::npos) throw std::invalid_argument(fmt::format("'{}' is not two numbers X,Y", shown(s)));
  return {parse_float(s.substr(0, comma)), parse_float(s.substr(comma + 1))};
}

Option integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
               Field<int64_t> field, int64_t min) {
  return row(
      std::move(flag), std::move(keys), OptionType::kInt, scope, "N", std::move(help),
      [field, min](JobConfig& c, const OptionValue& v) {
        const int64_t n = std::get<int64_t>(v);
        if (n < min) throw std::invalid_argument(fmt::format("must be ≥ {}, got {}", min, n));
        field.set(c, n);
      },
      [field](const JobConfig& c) { return fmt::format("{}", field(c)); });
}

Option integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
               Field<uint64_t> field) {
  return row(
      std::move(flag), std::move(keys), OptionType::kInt, scope, "N", std::move(help),
      [field](JobConfig& c, const OptionValue& v) {
        const int64_t n = std::get<int64_t>(v);
        if (n < 0) throw std::invalid_argument(fmt::format("must be ≥ 0, got {}", n));
        field.set(c, static_cast<uint64_t>(n));
      },
      [field](const JobConfig& c) { return fmt::format("{}", field(c)); });
}

Option optional_integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                        Field<std::optional<int64_t>> field, std::string unset) {
  return row(
      std::move(flag), std::move(keys), OptionType::kInt, scope, "N", std::move(help),
      [field](JobConfig& c, const OptionValue& v) { field.set(c, std::get<int64_t>(v)); },
      [field, unset](const JobConfig& c) { return field(c) ? fmt::format("{}", *field(c)) : unset; });
}

Option number(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
              Field<double> field) {
  return row(
      std::move(flag), std::move(keys), OptionType::kFloat, scope, "X", std::move(help),
      [field](JobConfig& c, const OptionValue& v) { field.set(c, std::get<double>(v)); },
      [field](const JobConfig& c) { return number_text(field(c)); });
}

Option optional_number(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                       Field<std::optional<double>> field, std::string unset) {
  return row(
      std::move(flag), std::move(keys), OptionType::kFloat, scope, "X", std::move(help),
      [field](JobConfig& c, const OptionValue& v) { field.set(c, std::get<double>(v)); },
      [field, unset](const JobConfig& c) { return field(c) ? number_text(*field(c)) : unset; });
}

Option boolean(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
               Field<bool> field) {
  return row(
      std::move(flag), std::move(keys), OptionType::kBool, scope, "on|off", std::move(help),
      [field](JobConfig& c, const OptionValue& v) { field.set(c, std::get<bool>(v)); },
      [field](const JobConfig& c) { return on_off(field(c)); });
}

Option optional_boolean(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                        Field<std::optional<bool>> field, std::string unset) {
  return row(
      std::move(flag), std::move(keys), OptionType::kBool, scope, "on|off", std::move(help),
      [field](JobConfig& c, const OptionValue& v) { field.set(c, std::get<bool>(v)); },
      [field, unset](const JobConfig& c) { return field(c) ? on_off(*field(c)) : unset; });
}

Option switch_flag(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                   Field<bool> field) {
  return row(
      std::move(flag), std::move(keys), OptionType::kSwitch, scope, "", std::move(help),
      [field](JobConfig& c, const OptionValue& v) { field.set(c, std::get<bool>(v)); },
      [field](const JobConfig& c) { return on_off(field(c)); });
}

namespace {

bool word_value(const std::string& s, const Word& first, const Word& second) {
  if (s == first.text) return first.value;
  if (s == second.text) return second.value;
  throw std::invalid_argument(fmt::format("'{}' is not {} or {}", shown(s), first.text, second.text));
}

const std::string& word_text(bool b, const Word& first, const Word& second) {
  return b == first.value ? first.text : second.text;
}

}  // namespace

Option either(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field<bool> field,
              Word first, Word second) {
  std::string hint = first.text + "|" + second.text;
  return row(
      std::move(flag), std::move(keys), OptionType::kString, scope, std::move(hint), std::move(help),
      [=](JobConfig& c, const OptionValue& v) { field.set(c, word_value(std::get<std::string>(v), first, second)); },
      [=](const JobConfig& c) { return word_text(field(c), first, second); });
}

Option either(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
              Field<std::optional<bool>> field, Word first, Word second, std::string unset) {
  std::string hint = first.text + "|" + second.text;
  return row(
      std::move(flag), std::move(keys), OptionType::kString, scope, std::move(hint), std::move(help),
      [=](JobConfig& c, const OptionValue& v) { field.set(c, word_value(std::get<std::string>(v), first, second)); },
      [=](const JobConfig& c) { return field(c) ? word_text(*field(c), first, second) : unset; });
}

Option text(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint, std::string help,
            Field<std::string> field, std::string unset) {
  return row(
      std::move(flag), std::move(keys), OptionType::kString, scope, std::move(hint), std::move(help),
      [field](JobConfig& c, const OptionValue& v) { field.set(c, std::get<std::string>(v)); },
      [field, unset](const JobConfig& c) { return field(c).empty() ? unset : field(c); });
}

Option number_pair(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint,
                   std::string help, Field<double> first, Field<double> second) {
  return row(
      std::move(flag), std::move(keys), OptionType::kFloatPair, scope, std::move(hint), std::move(help),
      [first, second](JobConfig& c, const OptionValue& v) {
        const auto [x, y] = std::get<std::pair<double, double>>(v);
        first.set(c, x);
        second.set(c, y);
      },
      [first, second](const JobConfig& c) { return fmt::format("{},{}", first(c), second(c)); });
}

Option one_of(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
              Field<std::string> field, std::vector<std::string> words) {
  std::string hint, listed;
  for (size_t i = 0; i < words.size(); ++i) {
    hint += (i ? "|" : "") + words[i];
    listed += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + words[i];
  }
  return row(
      std::move(flag), std::move(keys), OptionType::kString, scope, std::move(hint), std::move(help),
      [field, words, listed](JobConfig& c, const OptionValue& v) {
        std::string s = std::get<std::string>(v);
        std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
        if (std::find(words.begin(), words.end(), s) == words.end())
          throw std::invalid_argument(fmt::format("'{}' is not {}", shown(std::get<std::string>(v)), listed));
        field.set(c, s);
      },
      [field](const JobConfig& c) { return field(c); });
}

Option bytes(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
             Field<std::optional<int64_t>> field) {
  return row(
      std::move(flag), std::move(keys), OptionType::kString, scope, "SIZE", std::move(help),
      [field](JobConfig& c, const OptionValue& v) { field.set(c, parse_bytes(std::get<std::string>(v))); },
      [field](const JobConfig& c) { return field(c) ? format_bytes(*field(c)) : std::string("none"); });
}

}  // namespace gradacc::rows
