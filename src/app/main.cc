// gradacc command line: a thin layer over the library. The flags of train, verify and plan come
// from the options table (job/options_table.h); every value is taken as text and parsed by the
// table's strict parsers. Every error ends in one line on stderr and exit status 2; --help prints
// usage (with each default) and exits 0.
#include <unistd.h>

#include <iostream>
#include <limits>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "app/generate.h"
#include "app/job.h"
#include "app/launcher.h"
#include "app/options_table.h"
#include "app/plot.h"
#include "gradacc/batch_plan.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "gradacc/lr_schedule.h"
#include "gradacc/memory_plan.h"

namespace {

using namespace gradacc;

// --config-format's value: unset when not given.
std::optional<ConfigFormat> config_format_flag(const std::string& text) {
  if (text.empty()) return std::nullopt;
  try {
    return parse_config_format(text);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(fmt::format("--config-format: {}", e.what()));
  }
}

// The table's flags of one subcommand, each bound to the text the user gave.
struct TableFlags {
  std::vector<std::pair<const Option*, CLI::Option*>> bound;
  std::map<const Option*, std::string> text;
  std::string config, config_format;

  void add(CLI::App& cmd, std::initializer_list<OptionScope> scopes, bool with_config) {
    if (with_config) {
      cmd.add_option("--config", config,
                     "JSON config file: gradacc's keys, a DeepSpeed config or Hugging Face TrainingArguments JSON "
                     "(flags override its keys)");
      cmd.add_option("--config-format", config_format, "gradacc|deepspeed|hf (default: detected from the keys)");
    }
    const JobConfig defaults = default_job();
    for (const Option& o : option_table()) {
      if (o.flag.empty() || std::find(scopes.begin(), scopes.end(), o.scope) == scopes.end()) continue;
      const std::string help = fmt::format("{} (default: {})", o.help, o.show(defaults));
      CLI::Option* h = nullptr;
      if (o.type == OptionType::kSwitch) {
        h = cmd.add_flag(o.flag, help);
      } else {
        h = cmd.add_option(o.flag, text[&o], help)->type_name(o.value_hint);
      }
      bound.emplace_back(&o, h);
    }
  }

  // Defaults, then the config file, then the flags given.
  JobConfig build() {
    JobConfig c = default_job();
    if (!config_format.empty() && config.empty()) throw ConfigError("--config-format goes with --config FILE");
    if (!config.empty()) apply_config_file(config, c, config_format_flag(config_format));
    c.config_path = config;
    for (const auto& [o, h] : bound) {
      if (h->count() == 0) continue;
      apply_flag(c, *o, o->type == OptionType::kSwitch ? "" : text[o]);
      // Hugging Face's default of 3 epochs yields to --steps, as its own max_steps wins over it.
      if (o->flag == "--epochs") c.foreign.epochs_by_default = false;
      if (o->flag == "--steps" && c.foreign.epochs_by_default) c.train.data().epochs(std::nullopt);
    }
    return c;
  }
};

std::string checked_text(const std::string& flag, const std::string& value) {
  if (value.empty()) throw ConfigError(fmt::format("{}: must not be empty", flag));
  return value;
}

int64_t int_flag(const std::string& flag, const std::string& value) {
  try {
    return parse_int(value);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(fmt::format("{}: {}", flag, e.what()));
  }
}

// An int-sized flag: a value beyond int is refused before the cast could wrap it into range; the
// range itself is checked by whoever takes the value (launch_local).
int int_sized_flag(const std::string& flag, const std::string& value) {
  const int64_t v = int_flag(flag, value);
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    throw ConfigError(fmt::format("{}: {} is out of range", flag, v));
  return static_cast<int>(v);
}

double float_flag(const std::string& flag, const std::string& value) {
  try {
    return parse_float(value);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(fmt::format("{}: {}", flag, e.what()));
  }
}

int cmd_plan(const JobConfig& c, const std::string& dataset_size_text) {
  const int64_t dataset_size = dataset_size_text.empty() ? 60000 : int_flag("--dataset-size", dataset_size_text);
  const TrainOptions& t = c.train;
  // accum auto: the plan of its first windows (the Trainer checks the rest of the options).
  const int64_t auto_start = t.batch().accum_auto_min().value_or(t.distributed().world_size().value_or(1) > 1 ? 1 : 2);
  const BatchPlan p =
      BatchPlan::resolve({t.batch().global_batch(), t.batch().micro_batch(),
                          t.batch().accum_auto() ? std::optional<int64_t>(auto_start) : t.batch().accumulation_steps(),
                          t.distributed().world_size()});
  const EpochLayout e = EpochLayout::of(p, dataset_size, t.data().drop_partial());
  fmt::print("global batch        {}\n", p.global_batch);
  if (t.batch().micro_batch_tokens() == 0) {
    fmt::print(
        "micro-batches       of at most N tokens, N chosen by the memory budget (plan --fit), cut from each "
        "rank's {} sequences\n",
        p.micro_batch);
  } else if (t.batch().micro_batch_tokens()) {
    fmt::print("micro-batches       of at most {} tokens (rows × longest row), cut from each rank's {} sequences\n",
               *t.batch().micro_batch_tokens(), p.micro_batch);
  } else {
    fmt::print("micro-batch         {}\n", p.micro_batch);
  }
  if (!t.batch().micro_batch_tokens()) fmt::print("accumulation steps  {}\n", p.accumulation_steps);
  if (t.batch().accum_auto()) {
    fmt::print("                    auto: starts at {}, then follows the noise scale, up to {} (docs/noise-scale.md)\n",
               auto_start, t.batch().accum_auto_max());
  }
  fmt::print("world size          {}\n", p.world_size);
  fmt::print("data set            {} samples\n", dataset_size);
  fmt::print("windows per epoch   {} ({} full", e.windows(), e.full_windows);
  if (e.partial_window_size == 0)
    fmt::print(", no partial window)\n");
  else if (e.partial_dropped)
    fmt::print("; a partial window of {} samples is dropped)\n", e.partial_window_size);
  else
    fmt::print(" + 1 partial)\n");
  if (e.partial_window_size > 0 && !e.partial_dropped && t.batch().micro_batch_tokens()) {
    fmt::print("last window         {} samples, cut by tokens like the others, rescaled by its real size\n",
               e.partial_window_size);
  } else if (e.partial_window_size > 0 && !e.partial_dropped) {
    fmt::print("last window         {} samples in {} micro-batch(es) per rank, rescaled by its real size\n",
               e.partial_window_size, e.partial_micro_batches(p));
  }
  if (t.schedule().lr_scaling() != LrScaling::kNone) {
    if (!t.schedule().base_batch())
      throw ConfigError("lr_scaling needs --base-batch B0: the global batch the rate was tuned at");
    if (t.schedule().lr_scaling() == LrScaling::kAdaScale) {
      fmt::print(
          "lr scaling          adascale: the schedule's rate × r, r between 1 and B/B0 = {:.6g} from the noise "
          "scale, the schedule advancing by r per update\n",
          lr_scale(LrScaling::kLinear, static_cast<double>(p.global_batch), *t.schedule().base_batch()));
    } else if (t.batch().normalization() == Normalization::kPerItem && c.data.starts_with("text:")) {
      fmt::print(
          "lr scaling          {}: B counted in tokens (samples × the longest example's tokens) against B0 {:g}; "
          "the step log's lr_scale shows the factor\n",
          to_string(t.schedule().lr_scaling()), *t.schedule().base_batch());
    } else {
      fmt::print("lr scaling          {}: the schedule's rate × {:.6g} at this batch ({} / B0 {:g})\n",
                 to_string(t.schedule().lr_scaling()),
                 lr_scale(t.schedule().lr_scaling(), static_cast<double>(p.global_batch), *t.schedule().base_batch()),
                 p.global_batch, *t.schedule().base_batch());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gradacc::keep_freed_host_memory();  // before any tensor: each micro-batch reuses the last one's memory
  CLI::App app{"gradacc: exact gradient accumulation on LibTorch"};
  app.require_subcommand(1);

  auto* train =
      app.add_subcommand("train", "train a model (default: CNN + GroupNorm on Fashion-MNIST, 8 × 32, 8 epochs)");
  TableFlags train_flags;
  train_flags.add(*train, {OptionScope::kRun, OptionScope::kTrain, OptionScope::kBatch}, true);

  auto* verify = app.add_subcommand("verify", "check accumulated training against full-batch training");
  TableFlags verify_flags;
  verify_flags.add(*verify, {OptionScope::kRun, OptionScope::kBatch}, true);
  bool as_json = false;
  std::string weight_tol, loss_tol;
  verify->add_flag("--json", as_json, "print one JSON object");
  verify->add_option("--weight-tol", weight_tol,
                     "tolerance on max |Δweight| relative to the largest movement (default 5e-2)");
  verify->add_option("--loss-tol", loss_tol, "tolerance on the relative difference of any step's loss (default 5e-4)");

  auto* plan = app.add_subcommand(
      "plan", "resolve and print a batch plan; with --fit, measure the model and fit the batch into --memory-budget");
  TableFlags plan_flags;
  plan_flags.add(*plan, {OptionScope::kRun, OptionScope::kBatch}, true);
  std::string dataset_size;
  bool fit = false, plan_json = false;
  plan->add_option("--dataset-size", dataset_size, "samples per epoch (default: Fashion-MNIST's 60000)");
  plan->add_flag("--fit", fit, "measure the model on its data and device, and plan micro-batch and checkpointing");
  plan->add_flag("--json", plan_json, "with --fit: print one JSON object");

  auto* options = app.add_subcommand("options", "list every option of train/verify (flag, config keys, default)");
  bool markdown = false;
  std::string from_config, from_config_format;
  options->add_flag("--markdown", markdown, "as the Markdown table of docs/config.md");
  options->add_option("--from-config", from_config,
                      "say for each key of this config file (gradacc, DeepSpeed or Hugging Face) whether gradacc "
                      "honours, maps, ignores or refuses it, and why");
  options->add_option("--config-format", from_config_format,
                      "with --from-config: gradacc|deepspeed|hf (default: detected)");

  auto* generate = app.add_subcommand("generate", "sample text from gpt weights saved by train --save");
  GenerateOptions go;
  std::string gen_tokens, gen_temperature, gen_top_k, gen_seed;
  generate->add_option("--init", go.weights, "weights (safetensors) from gradacc train --save")->required();
  generate->add_option("--prompt", go.prompt, "text to continue (default: a newline)");
  generate->add_option("--tokens", gen_tokens, "bytes to generate (default 300)");
  generate->add_option("--temperature", gen_temperature, "softmax temperature; 0 = greedy (default 0.8)");
  generate->add_option("--top-k", gen_top_k, "sample among the k likeliest bytes; 0 = all (default)");
  generate->add_option("--seed", gen_seed, "sampling seed (default 0)");

  auto* launch = app.add_subcommand(
      "launch", "run N data-parallel ranks on this machine: gradacc launch --nproc N [--program P] -- ARGS");
  LaunchOptions lo;
  std::string nproc, master_port, grace, max_restarts;
  launch->add_option("--nproc", nproc, "ranks to start")->required();
  launch->add_option("--master-addr", lo.master_addr, "rendezvous address (default 127.0.0.1)");
  launch->add_option("--master-port", master_port,
                     "port of the rendezvous store the launcher hosts (default 0: a free one)");
  launch->add_option("--grace", grace, "seconds between SIGTERM and SIGKILL when a rank fails (default 10)");
  launch->add_option("--max-restarts", max_restarts,
                     "times all ranks start again after one failed (default 0); pair with train --resume auto");
  launch->add_option("--program", lo.executable,
                     "the program each rank runs (default: this gradacc), e.g. your own trainer");

  auto* plot = app.add_subcommand("plot", "draw metrics of JSONL logs against the optimizer step (PNG or SVG)");
  PlotOptions po;
  plot->add_option("logs", po.logs, "JSONL logs from gradacc train --log")->required();
  plot->add_option("-o,--output", po.output, "FILE.png or FILE.svg")->required();
  plot->add_option("--metrics", po.metrics,
                   "comma-separated step fields (default loss; e.g. loss,lr,grad_norm,peak_bytes)")
      ->delimiter(',');
  plot->add_option("--labels", po.labels, "comma-separated legend labels, one per log")->delimiter(',');
  plot->add_option("--title", po.title, "chart title");

  // `launch ... -- COMMAND`: the rank command is not ours to parse; cut it off first.
  std::vector<std::string> rank_command;
  if (argc > 1 && std::string(argv[1]) == "launch") {
    for (int i = 2; i < argc; ++i) {
      if (std::string(argv[i]) != "--") continue;
      rank_command.assign(argv + i + 1, argv + argc);
      argc = i;
      break;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help on a subcommand
    std::string message = e.what();
    std::cerr << "gradacc: error: " << message.substr(0, message.find('\n')) << "\n";
    return 2;
  }

  try {
    if (plan->parsed()) {
      if (!fit) {
        if (plan_json) throw ConfigError("plan --json goes with --fit");
        if (plan_flags.build().train.memory().budget())
          throw ConfigError("plan --memory-budget measures the model: add --fit (with the model and data flags)");
        return cmd_plan(plan_flags.build(), dataset_size);
      }
      if (!dataset_size.empty()) throw ConfigError("plan --fit measures the data set itself: drop --dataset-size");
      const MemoryPlan m = run_plan_fit_job(plan_flags.build());
      std::cout << (plan_json ? m.json() + "\n" : m.describe());
      return 0;
    }
    if (options->parsed()) {
      if (!from_config_format.empty() && from_config.empty())
        throw ConfigError("--config-format goes with --from-config FILE");
      if (!from_config.empty()) {
        std::cout << explain_config_file(from_config, config_format_flag(from_config_format));
        return 0;
      }
      if (markdown) {
        std::cout << options_markdown();
      } else {
        const JobConfig defaults = default_job();
        for (const Option& o : option_table()) {
          const std::string key = !o.keys.empty()        ? o.keys.front()
                                  : !o.deepspeed.empty() ? "deepspeed: " + o.deepspeed.front()
                                                         : "hf: " + o.hf.front();
          std::cout << fmt::format("{:<26} {:<46} {}\n", o.flag.empty() ? "(config only)" : o.flag, key,
                                   o.keys.empty() ? "" : o.show(defaults));
        }
      }
      return 0;
    }
    if (launch->parsed()) {
      lo.nproc = int_sized_flag("--nproc", nproc);
      if (!master_port.empty()) lo.master_port = int_sized_flag("--master-port", master_port);
      if (!max_restarts.empty()) lo.max_restarts = int_sized_flag("--max-restarts", max_restarts);
      if (!grace.empty()) {
        lo.grace_seconds = float_flag("--grace", grace);
        if (lo.grace_seconds < 0 || lo.grace_seconds > 3600)
          throw ConfigError(fmt::format("--grace: seconds between SIGTERM and SIGKILL lie in 0..3600, got {}", grace));
      }
      lo.args = rank_command;
      return launch_local(lo, std::cout, std::cerr);
    }
    if (plot->parsed()) {
      plot_runs(po);
      return 0;
    }
    if (generate->parsed()) {
      checked_text("--prompt", go.prompt);
      if (!gen_tokens.empty()) go.tokens = int_flag("--tokens", gen_tokens);
      if (!gen_temperature.empty()) go.temperature = float_flag("--temperature", gen_temperature);
      if (!gen_top_k.empty()) go.top_k = int_flag("--top-k", gen_top_k);
      if (!gen_seed.empty()) {
        const int64_t seed = int_flag("--seed", gen_seed);
        if (seed < 0) throw ConfigError(fmt::format("--seed must be ≥ 0, got {}", seed));
        go.seed = static_cast<uint64_t>(seed);
      }
      generate_text(go, [](std::string_view text) { std::cout << text << std::flush; });
      std::cout << "\n";
      return 0;
    }
    if (verify->parsed()) {
      // --steps is K, the steps to compare; the LR schedule stays that of the configured run.
      JobConfig config = verify_flags.build();
      VerifyOptions vo;
      vo.steps = config.train.data().steps().value_or(5);
      config.train.data().steps(std::nullopt);
      if (!weight_tol.empty()) vo.weight_tolerance = float_flag("--weight-tol", weight_tol);
      if (!loss_tol.empty()) vo.loss_tolerance = float_flag("--loss-tol", loss_tol);
      const VerifyResult r = run_verify_job(config, vo);
      std::cout << (as_json ? verify_json(r, vo) + "\n" : verify_text(r, vo));
      return r.pass ? 0 : 1;
    }
    const JobSummary s = run_train_job(train_flags.build(), std::cout);
    return s.result.interrupted_by ? 128 + s.result.interrupted_by : 0;
  } catch (const std::bad_alloc&) {
    std::cerr << "gradacc: error: out of memory: a size given (batch, model, data) needs more than this machine has\n";
    return 2;
  } catch (const std::exception& e) {
    // One line, always: LibTorch's own errors carry a backtrace after the first line.
    std::string message = e.what();
    message = message.substr(0, message.find('\n'));
    std::cerr << "gradacc: error: " << message << "\n";
    return 2;
  }
}
