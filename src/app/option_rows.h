// The row builders of the options table (options_table.cc assembles it; option_rows_*.cc hold the
// rows by concern): each makes one Option from a flag, its config keys, its help and a field of
// JobConfig. Private to the app.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "app/options_table.h"
#include "gradacc/errors.h"

namespace gradacc::rows {

inline bool parse_bool(const std::string& s) {
  if (s == "on" || s == "true") return true;
  if (s == "off" || s == "false") return false;
  throw std::invalid_argument(fmt::format("'{}' is not on or off", shown(s)));
}

inline std::pair<double, double> parse_pair(const std::string& s) {
  const auto comma = s.find(',');
  if (comma == std::string::npos) throw std::invalid_argument(fmt::format("'{}' is not two numbers X,Y", shown(s)));
  return {parse_float(s.substr(0, comma)), parse_float(s.substr(comma + 1))};
}

inline std::string number_text(double v) { return fmt::format("{}", v); }

// ── Row builders: a row reads and writes one field of JobConfig through `field`. ──────────────

template <typename Field>
Option integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field field) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kInt,
          scope,
          "N",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<int64_t>(v); },
          [field](const JobConfig& c) { return fmt::format("{}", field(const_cast<JobConfig&>(c))); }};
}

template <typename Field>
Option optional_integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                        Field field, std::string unset) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kInt,
          scope,
          "N",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<int64_t>(v); },
          [field, unset](const JobConfig& c) {
            const auto& v = field(const_cast<JobConfig&>(c));
            return v ? fmt::format("{}", *v) : unset;
          }};
}

template <typename Field>
Option number(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field field) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kFloat,
          scope,
          "X",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<double>(v); },
          [field](const JobConfig& c) { return number_text(field(const_cast<JobConfig&>(c))); }};
}

template <typename Field>
Option optional_number(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                       Field field, std::string unset) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kFloat,
          scope,
          "X",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<double>(v); },
          [field, unset](const JobConfig& c) {
            const auto& v = field(const_cast<JobConfig&>(c));
            return v ? number_text(*v) : unset;
          }};
}

template <typename Field>
Option boolean(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field field) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kBool,
          scope,
          "on|off",
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<bool>(v); },
          [field](const JobConfig& c) { return std::string(field(const_cast<JobConfig&>(c)) ? "on" : "off"); }};
}

template <typename Field>
Option text(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint, std::string help,
            Field field, std::string unset = "none") {
  return {std::move(flag),
          std::move(keys),
          OptionType::kString,
          scope,
          std::move(hint),
          std::move(help),
          [field](JobConfig& c, const OptionValue& v) { field(c) = std::get<std::string>(v); },
          [field, unset](const JobConfig& c) {
            const std::string& v = field(const_cast<JobConfig&>(c));
            return v.empty() ? unset : v;
          }};
}

// An enumeration stored through `parse` (std::invalid_argument on an unknown name) and shown
// through `name` (to_string).
template <typename Field, typename Parse, typename Name>
Option choice(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint, std::string help,
              Field field, Parse parse, Name name) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kString,
          scope,
          std::move(hint),
          std::move(help),
          [field, parse](JobConfig& c, const OptionValue& v) { field(c) = parse(std::get<std::string>(v)); },
          [field, name](const JobConfig& c) { return name(field(const_cast<JobConfig&>(c))); }};
}

inline std::string precision_or(const std::optional<Precision>& p, const std::string& unset) {
  return p ? to_string(*p) : unset;
}

// The rows, by concern, appended in the order `gradacc options` lists them.
void add_model_and_batch_rows(std::vector<Option>& t);          // model, data, batch, length
void add_optimizer_and_precision_rows(std::vector<Option>& t);  // optimizer, schedule, data order, precision
void add_run_rows(std::vector<Option>& t);                      // noise scale, data parallel, files, device

}  // namespace gradacc::rows
