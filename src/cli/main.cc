// gradacc command line: a thin layer over the library. Every error ends in one line on stderr and
// exit status 2; --help prints usage and exits 0.
#include <unistd.h>

#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "gradacc/accumulate/batch_plan.h"
#include "gradacc/log/plot.h"
#include "gradacc/run/config.h"
#include "gradacc/run/generate.h"
#include "gradacc/run/trainer.h"
#include "gradacc/run/verify.h"
#include "gradacc/sync/launcher.h"

namespace {

using namespace gradacc;

// Flag values as given; only the ones the user set override the config file.
struct Flags {
  std::string accum_schedule;
  std::string config, model, norm, data, optimizer, schedule, shuffle, partial, log, init, save, device;
  std::string checkpoint_dir, resume, precision, param_dtype, grad_accum_dtype, sync, tf32;
  std::optional<double> dist_timeout, bucket_mb;
  std::optional<double> loss_scale_init, loss_scale_growth, loss_scale_backoff;
  std::optional<int64_t> loss_scale_interval;
  std::optional<int64_t> save_every, keep_checkpoints, stop_at;
  std::optional<int64_t> global_batch, micro_batch, accum, world_size, warmup, steps, epochs, seed, train_limit, threads;
  std::optional<int64_t> layers, heads, dim, context;
  std::optional<double> lr, weight_decay, momentum, min_lr, clip;
  bool nesterov = false;
};

void add_batch_flags(CLI::App& cmd, Flags& f) {
  cmd.add_option("--global-batch", f.global_batch, "samples per optimizer step over all ranks (train_batch_size)");
  cmd.add_option("--micro-batch", f.micro_batch, "samples per forward/backward pass (train_micro_batch_size_per_gpu)");
  cmd.add_option("--accum", f.accum, "micro-batches per optimizer step (gradient_accumulation_steps)");
}

void add_accum_schedule_flag(CLI::App& cmd, Flags& f) {
  cmd.add_option("--accum-schedule", f.accum_schedule, "accumulation by optimizer step, e.g. 0:2,200:4,600:8 (needs --steps)");
}

void add_run_flags(CLI::App& cmd, Flags& f) {
  cmd.add_option("--config", f.config, "JSON config file (flags override its keys)");
  cmd.add_option("--model", f.model, "mlp | cnn | gpt");
  cmd.add_option("--norm", f.norm, "cnn: batch | group | layer | none; gpt: layer | rms");
  cmd.add_option("--layers", f.layers, "gpt: transformer blocks");
  cmd.add_option("--heads", f.heads, "gpt: attention heads");
  cmd.add_option("--dim", f.dim, "gpt: model width");
  cmd.add_option("--context", f.context, "gpt: longest sequence (tokens)");
  cmd.add_option("--data", f.data, "fashion-mnist, fashion-mnist:DIR or text:PATH");
  cmd.add_option("--train-limit", f.train_limit, "use only the first N training examples");
  add_batch_flags(cmd, f);
  cmd.add_option("--optimizer", f.optimizer, "sgd | adam | adamw");
  cmd.add_option("--lr", f.lr, "peak learning rate");
  cmd.add_option("--weight-decay", f.weight_decay, "weight decay");
  cmd.add_option("--momentum", f.momentum, "SGD momentum");
  cmd.add_flag("--nesterov", f.nesterov, "SGD with Nesterov momentum");
  cmd.add_option("--schedule", f.schedule, "constant | cosine | linear (counted in optimizer steps)");
  cmd.add_option("--warmup", f.warmup, "linear warmup, in optimizer steps");
  cmd.add_option("--min-lr", f.min_lr, "learning rate the decay ends at");
  cmd.add_option("--clip", f.clip, "clip the window gradient to this global L2 norm (0 = off)");
  cmd.add_option("--steps", f.steps, "optimizer steps to run");
  cmd.add_option("--epochs", f.epochs, "passes over the training data");
  cmd.add_option("--seed", f.seed, "seed for weights and shuffling");
  cmd.add_option("--shuffle", f.shuffle, "on | off");
  cmd.add_option("--partial", f.partial, "last short window: rescale | drop");
  cmd.add_option("--threads", f.threads, "intra-op threads (default: all cores)");
  cmd.add_option("--device", f.device, "cpu | cuda | cuda:N (default cpu)");
  cmd.add_option("--tf32", f.tf32, "CUDA fp32 matmul/conv on TF32 tensor cores: on | off (default off: exact fp32)");
  cmd.add_option("--init", f.init, "start from these weights (safetensors)");
  cmd.add_option("--precision", f.precision, "forward autocast: fp32 | bf16 | fp16 (default: the param dtype)");
  cmd.add_option("--param-dtype", f.param_dtype, "hold parameters in fp32 | bf16 | fp16");
  cmd.add_option("--grad-accum-dtype", f.grad_accum_dtype, "sum gradients in fp32 (default, with fp32 master weights) or the param dtype");
  cmd.add_option("--loss-scale-init", f.loss_scale_init, "fp16: initial loss scale (default 65536)");
  cmd.add_option("--loss-scale-growth", f.loss_scale_growth, "fp16: growth factor (default 2)");
  cmd.add_option("--loss-scale-backoff", f.loss_scale_backoff, "fp16: backoff factor on overflow (default 0.5)");
  cmd.add_option("--loss-scale-interval", f.loss_scale_interval, "fp16: good steps before growth (default 2000)");
}

Precision precision_flag(const std::string& flag, const std::string& value) {
  try {
    return parse_precision(value);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(fmt::format("{}: {}", flag, e.what()));
  }
}

TrainConfig build_config(const Flags& f) {
  TrainConfig c = default_job();
  if (!f.config.empty()) apply_config_file(f.config, c);
  auto set_str = [](const std::string& v, std::string& dst) { if (!v.empty()) dst = v; };
  set_str(f.model, c.model.name);
  if (!f.norm.empty()) {
    try { c.model.norm = parse_norm(f.norm); } catch (const std::invalid_argument& e) { throw ConfigError(fmt::format("--norm: {}", e.what())); }
  }
  set_str(f.data, c.data);
  set_str(f.accum_schedule, c.accum_schedule);
  if (f.layers) c.model.layers = *f.layers;
  if (f.heads) c.model.heads = *f.heads;
  if (f.dim) c.model.dim = *f.dim;
  if (f.context) c.model.context = *f.context;
  set_str(f.optimizer, c.optimizer.name);
  if (!f.schedule.empty()) {
    try { c.schedule = parse_schedule(f.schedule); } catch (const std::invalid_argument& e) { throw ConfigError(fmt::format("--schedule: {}", e.what())); }
  }
  if (!f.shuffle.empty()) {
    if (f.shuffle != "on" && f.shuffle != "off") throw ConfigError(fmt::format("--shuffle must be on or off, got '{}'", f.shuffle));
    c.shuffle = f.shuffle == "on";
  }
  if (!f.partial.empty()) {
    if (f.partial != "rescale" && f.partial != "drop") throw ConfigError(fmt::format("--partial must be rescale or drop, got '{}'", f.partial));
    c.drop_partial = f.partial == "drop";
  }
  set_str(f.log, c.log_path);
  set_str(f.init, c.init_path);
  set_str(f.save, c.save_path);
  set_str(f.device, c.device);
  if (!f.tf32.empty()) {
    if (f.tf32 != "on" && f.tf32 != "off") throw ConfigError(fmt::format("--tf32 must be on or off, got '{}'", f.tf32));
    c.tf32 = f.tf32 == "on";
  }
  if (!f.precision.empty()) c.precision = precision_flag("--precision", f.precision);
  if (!f.param_dtype.empty()) c.param_dtype = precision_flag("--param-dtype", f.param_dtype);
  if (!f.grad_accum_dtype.empty()) c.grad_accum_dtype = precision_flag("--grad-accum-dtype", f.grad_accum_dtype);
  if (f.loss_scale_init) c.loss_scale_init = f.loss_scale_init;
  if (f.loss_scale_growth) c.loss_scale_growth = f.loss_scale_growth;
  if (f.loss_scale_backoff) c.loss_scale_backoff = f.loss_scale_backoff;
  if (f.loss_scale_interval) c.loss_scale_interval = f.loss_scale_interval;
  if (!f.sync.empty()) c.sync = parse_sync(f.sync);
  if (f.dist_timeout) c.dist_timeout = *f.dist_timeout;
  if (f.bucket_mb) c.bucket_mb = *f.bucket_mb;
  set_str(f.checkpoint_dir, c.checkpoint_dir);
  set_str(f.resume, c.resume_path);
  if (f.save_every) c.save_every = *f.save_every;
  if (f.keep_checkpoints) c.keep_checkpoints = *f.keep_checkpoints;
  if (f.stop_at) c.stop_at = *f.stop_at;
  if (f.global_batch) c.batch.global_batch = f.global_batch;
  if (f.micro_batch) c.batch.micro_batch = f.micro_batch;
  if (f.accum) c.batch.accumulation_steps = f.accum;
  if (f.world_size) c.batch.world_size = f.world_size;
  if (f.lr) c.optimizer.lr = *f.lr;
  if (f.weight_decay) c.optimizer.weight_decay = *f.weight_decay;
  if (f.momentum) c.optimizer.momentum = *f.momentum;
  if (f.nesterov) c.optimizer.nesterov = true;
  if (f.warmup) c.warmup = *f.warmup;
  if (f.min_lr) c.min_lr = *f.min_lr;
  if (f.clip) c.clip = *f.clip;
  if (f.steps) { c.steps = f.steps; c.epochs.reset(); }
  if (f.epochs) { c.epochs = f.epochs; if (!f.steps) c.steps.reset(); }
  if (f.seed) {
    if (*f.seed < 0) throw ConfigError(fmt::format("--seed must be ≥ 0, got {}", *f.seed));
    c.seed = static_cast<uint64_t>(*f.seed);
  }
  if (f.train_limit) c.train_limit = *f.train_limit;
  if (f.threads) c.threads = static_cast<int>(*f.threads);
  apply_default_batch(c);
  validate(c);
  return c;
}

int cmd_plan(const Flags& f, int64_t dataset_size, const std::string& partial) {
  if (!partial.empty() && partial != "rescale" && partial != "drop") {
    throw ConfigError(fmt::format("--partial must be rescale or drop, got '{}'", partial));
  }
  const BatchPlan p = BatchPlan::resolve({f.global_batch, f.micro_batch, f.accum, f.world_size});
  const EpochLayout e = EpochLayout::of(p, dataset_size, partial == "drop");
  fmt::print("global batch        {}\n", p.global_batch);
  fmt::print("micro-batch         {}\n", p.micro_batch);
  fmt::print("accumulation steps  {}\n", p.accumulation_steps);
  fmt::print("world size          {}\n", p.world_size);
  fmt::print("data set            {} samples\n", dataset_size);
  fmt::print("windows per epoch   {} ({} full", e.windows(), e.full_windows);
  if (e.partial_window_size == 0) fmt::print(", no partial window)\n");
  else if (e.partial_dropped) fmt::print("; a partial window of {} samples is dropped)\n", e.partial_window_size);
  else fmt::print(" + 1 partial)\n");
  if (e.partial_window_size > 0 && !e.partial_dropped) {
    fmt::print("last window         {} samples in {} micro-batch(es) per rank, rescaled by its real size\n",
               e.partial_window_size, e.partial_micro_batches(p));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gradacc: exact, fast gradient accumulation on LibTorch"};
  app.require_subcommand(1);
  Flags flags;

  auto* train = app.add_subcommand("train", "train a model (defaults: CNN + GroupNorm on Fashion-MNIST, 8 × 32)");
  add_run_flags(*train, flags);
  add_accum_schedule_flag(*train, flags);
  train->add_option("--log", flags.log, "write one JSON line per optimizer step to this file");
  train->add_option("--save", flags.save, "save final weights (safetensors)");
  train->add_option("--sync", flags.sync, "data parallel: window (all-reduce once per optimizer step) | every-micro-batch");
  train->add_option("--dist-timeout", flags.dist_timeout, "data parallel: seconds before a dead or stalled rank is an error (default 300)");
  train->add_option("--bucket-mb", flags.bucket_mb, "data parallel: all-reduce bucket size in MiB (default 25)");
  train->add_option("--checkpoint-dir", flags.checkpoint_dir, "write checkpoints here (at the end, on SIGINT/SIGTERM, and every --save-every steps)");
  train->add_option("--save-every", flags.save_every, "optimizer steps between checkpoints");
  train->add_option("--keep-checkpoints", flags.keep_checkpoints, "newest checkpoints to keep (default 3)");
  train->add_option("--resume", flags.resume, "continue from a checkpoint file, or the newest in a directory");
  train->add_option("--stop-at", flags.stop_at, "stop after this optimizer step with a checkpoint (resume later)");

  auto* verify = app.add_subcommand("verify", "check accumulated training against full-batch training");
  add_run_flags(*verify, flags);
  VerifyOptions vo;
  bool as_json = false;
  verify->add_flag("--json", as_json, "print one JSON object");
  verify->add_option("--weight-tol", vo.weight_tolerance, "tolerance on max |Δweight|");
  verify->add_option("--loss-tol", vo.loss_tolerance, "tolerance on the relative loss difference per step");

  auto* plan = app.add_subcommand("plan", "resolve and print a batch plan");
  add_batch_flags(*plan, flags);
  plan->add_option("--world-size", flags.world_size, "data-parallel ranks");
  int64_t dataset_size = 60000;
  std::string plan_partial;
  plan->add_option("--dataset-size", dataset_size, "samples per epoch (default: Fashion-MNIST's 60000)");
  plan->add_option("--partial", plan_partial, "last short window: rescale | drop");

  auto* generate = app.add_subcommand("generate", "sample text from gpt weights saved by train --save");
  GenerateOptions go;
  int64_t gen_seed = 0;
  generate->add_option("--init", go.weights, "weights (safetensors) from gradacc train --save")->required();
  generate->add_option("--prompt", go.prompt, "text to continue (default: a newline)");
  generate->add_option("--tokens", go.tokens, "bytes to generate (default 300)");
  generate->add_option("--temperature", go.temperature, "softmax temperature; 0 = greedy (default 0.8)");
  generate->add_option("--top-k", go.top_k, "sample among the k likeliest bytes; 0 = all (default)");
  generate->add_option("--seed", gen_seed, "sampling seed");

  auto* launch = app.add_subcommand("launch", "run N data-parallel ranks on this machine: gradacc launch --nproc N -- train ...");
  LaunchOptions lo;
  launch->add_option("--nproc", lo.nproc, "ranks to start")->required();
  launch->add_option("--master-addr", lo.master_addr, "rendezvous address (default 127.0.0.1)");
  launch->add_option("--master-port", lo.master_port, "rendezvous port (default 29500)");
  launch->add_option("--grace", lo.grace_seconds, "seconds between SIGTERM and SIGKILL when a rank fails (default 10)");

  auto* plot = app.add_subcommand("plot", "draw metrics of JSONL logs against the optimizer step (PNG or SVG)");
  PlotOptions po;
  plot->add_option("logs", po.logs, "JSONL logs from gradacc train --log")->required();
  plot->add_option("-o,--output", po.output, "FILE.png or FILE.svg")->required();
  plot->add_option("--metrics", po.metrics, "comma-separated step fields (default loss; e.g. loss,lr,grad_norm,samples_per_s)")
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
    if (e.get_exit_code() == 0) {  // --help on a subcommand
      return app.exit(e);
    }
    std::cerr << "gradacc: error: " << e.what() << "\n";
    return 2;
  }

  try {
    if (plan->parsed()) return cmd_plan(flags, dataset_size, plan_partial);
    if (launch->parsed()) {
      lo.args = rank_command;
      return launch_local(lo, std::cout, std::cerr);
    }
    if (plot->parsed()) {
      plot_runs(po);
      return 0;
    }
    if (generate->parsed()) {
      if (gen_seed < 0) throw ConfigError(fmt::format("--seed must be ≥ 0, got {}", gen_seed));
      go.seed = static_cast<uint64_t>(gen_seed);
      std::cout << generate_text(go) << "\n";
      return 0;
    }
    if (verify->parsed()) {
      // --steps is K, the steps to compare; the LR schedule stays that of the configured run.
      vo.steps = flags.steps.value_or(5);
      flags.steps.reset();
    }
    TrainConfig config = build_config(flags);
    if (train->parsed()) {
      const TrainSummary s = run_training(config, std::cout);
      return s.interrupted_by ? 128 + s.interrupted_by : 0;
    }
    const VerifyResult r = run_verify(config, vo);
    std::cout << (as_json ? verify_json(r, vo) + "\n" : verify_text(r, vo));
    return r.pass ? 0 : 1;
  } catch (const std::exception& e) {
    // One line, always: LibTorch's own errors carry a backtrace after the first line.
    std::string message = e.what();
    message = message.substr(0, message.find('\n'));
    std::cerr << "gradacc: error: " << message << "\n";
    return 2;
  }
}
