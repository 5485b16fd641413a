// The row builders of the options table (options_table.cc assembles it; option_rows_*.cc hold the
// rows by concern). A row is one call: its flag, config keys, scope, help, and the field it sets,
// named by a member pointer: a TrainOptions group's accessor (&ScheduleOptions::min_lr) or a plain
// member of JobConfig, OptimizerOptions or ModelSpec (&JobConfig::eval_every, &OptimizerOptions::lr).
// Adding an option is its field in its struct and its row here. Private to the app.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "app/options_table.h"
#include "gradacc/errors.h"

namespace gradacc::rows {

// The struct of JobConfig that holds fields of type G.
template <typename G>
G& owner(JobConfig& c) {
  if constexpr (std::is_same_v<G, JobConfig>)
    return c;
  else if constexpr (std::is_same_v<G, OptimizerOptions>)
    return c.optimizer;
  else if constexpr (std::is_same_v<G, ModelSpec>)
    return c.model;
  else
    return c.train.group<G>();
}

// A field of JobConfig of type T, named by a member pointer: field(c) reads it, field.set(c, v)
// writes it (through a ranged field's Checked accessor, which refuses a value out of its range).
template <typename T>
class Field {
 public:
  template <typename G>
  Field(T& (G::*accessor)() noexcept)  // NOLINT: implicit, so that a row names the member only
      : set_([accessor](JobConfig& c, T v) { (owner<G>(c).*accessor)() = std::move(v); }),
        get_([accessor](JobConfig& c) -> const T& { return (owner<G>(c).*accessor)(); }) {}
  template <typename G>
  Field(Checked<T> (G::*accessor)() noexcept)  // NOLINT
      : set_([accessor](JobConfig& c, T v) { (owner<G>(c).*accessor)() = std::move(v); }),
        get_([accessor](JobConfig& c) -> const T& { return (owner<G>(c).*accessor)().get(); }) {}
  template <typename G>
  Field(T G::*member)  // NOLINT
      : set_([member](JobConfig& c, T v) { owner<G>(c).*member = std::move(v); }),
        get_([member](JobConfig& c) -> const T& { return owner<G>(c).*member; }) {}
  void set(JobConfig& c, T value) const { set_(c, std::move(value)); }
  const T& operator()(const JobConfig& c) const { return get_(const_cast<JobConfig&>(c)); }

 private:
  std::function<void(JobConfig&, T)> set_;
  std::function<const T&(JobConfig&)> get_;
};

bool parse_bool(const std::string& s);                       // on|off|true|false
std::pair<double, double> parse_pair(const std::string& s);  // "X,Y"

// A word of a two-word option and the value it stands for.
struct Word {
  std::string text;
  bool value;
};

Option integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
               Field<int64_t> field, int64_t min = std::numeric_limits<int64_t>::min());
Option integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
               Field<uint64_t> field);  // ≥ 0
Option optional_integer(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                        Field<std::optional<int64_t>> field, std::string unset);
Option number(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
              Field<double> field);
Option optional_number(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                       Field<std::optional<double>> field, std::string unset);
Option boolean(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field<bool> field);
Option optional_boolean(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                        Field<std::optional<bool>> field, std::string unset);
Option switch_flag(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
                   Field<bool> field);  // a flag without a value (--nesterov)
// A bool named by two words (--partial rescale|drop), unset shown as `unset`.
Option either(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help, Field<bool> field,
              Word first, Word second);
Option either(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
              Field<std::optional<bool>> field, Word first, Word second, std::string unset);
Option text(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint, std::string help,
            Field<std::string> field, std::string unset = "none");
// Two numbers X,Y into two fields (--betas).
Option number_pair(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint,
                   std::string help, Field<double> first, Field<double> second);
// Text that is one of `words`, in any case (--objective classify|contrastive); stored as the word.
Option one_of(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
              Field<std::string> field, std::vector<std::string> words);
Option bytes(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string help,
             Field<std::optional<int64_t>> field);  // 512MiB, 2GiB, 1.5GB

// An enumeration stored through `parse` (ConfigError or std::invalid_argument on an unknown name)
// and shown through `name`; the hint lists the names.
template <typename E>
Option choice(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint, std::string help,
              std::type_identity_t<Field<E>> field, E (*parse)(const std::string&), std::string (*name)(E)) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kString,
          scope,
          std::move(hint),
          std::move(help),
          [field, parse](JobConfig& c, const OptionValue& v) { field.set(c, parse(std::get<std::string>(v))); },
          [field, name](const JobConfig& c) { return name(field(c)); }};
}

template <typename E>
Option optional_choice(std::string flag, std::vector<std::string> keys, OptionScope scope, std::string hint,
                       std::string help, std::type_identity_t<Field<std::optional<E>>> field,
                       E (*parse)(const std::string&), std::string (*name)(E), std::string unset) {
  return {std::move(flag),
          std::move(keys),
          OptionType::kString,
          scope,
          std::move(hint),
          std::move(help),
          [field, parse](JobConfig& c, const OptionValue& v) { field.set(c, parse(std::get<std::string>(v))); },
          [field, name, unset](const JobConfig& c) { return field(c) ? name(*field(c)) : unset; }};
}

// The rows, by concern, appended in the order `gradacc options` lists them.
void add_model_and_batch_rows(std::vector<Option>& t);          // model, data, batch, length
void add_optimizer_and_precision_rows(std::vector<Option>& t);  // optimizer, schedule, data order, precision
void add_run_rows(std::vector<Option>& t);                      // noise scale, data parallel, files, device

}  // namespace gradacc::rows
