#include "gradacc/run/trainer.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <ATen/ops/argmax.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/utils.h>

#include "gradacc/data/fashion_mnist.h"
#include "gradacc/data/text.h"
#include "gradacc/device/device.h"
#include "gradacc/io/safetensors.h"
#include "gradacc/log/progress.h"
#include "gradacc/log/step_log.h"
#include "gradacc/run/checkpoint.h"
#include "gradacc/sync/communicator.h"
#include "gradacc/sync/dist_env.h"

namespace gradacc {

at::Tensor summed_cross_entropy(const at::Tensor& logits, const at::Tensor& targets) {
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), /*weight=*/{},
                                at::Reduction::Sum, kIgnoreIndex);
}

Workload load_workload(const TrainConfig& c) {
  if (c.data.rfind("text:", 0) == 0) {
    if (c.model.name != "gpt") throw ConfigError(fmt::format("text data needs --model gpt, not {}", c.model.name));
    const TextSplits splits = load_text(c.data.substr(5), c.model.context);
    Workload w;
    w.text = true;
    w.train = c.train_limit > 0 ? splits.train->head(c.train_limit) : splits.train;
    w.test = splits.validation;
    w.unigram_bits_per_byte = unigram_bits_per_byte(*splits.train, *splits.validation);
    return w;
  }
  if (c.model.name == "gpt") throw ConfigError(fmt::format("--model gpt needs --data text:PATH, not {}", c.data));
  const std::string prefix = "fashion-mnist";
  if (c.data.rfind(prefix, 0) != 0 || (c.data.size() > prefix.size() && c.data[prefix.size()] != ':')) {
    throw ConfigError(fmt::format("unknown data source '{}' (expected fashion-mnist or fashion-mnist:DIR)", c.data));
  }
  const std::string dir = c.data.size() > prefix.size() ? c.data.substr(prefix.size() + 1) : kFashionMnistDir;
  Workload w;
  auto train = load_fashion_mnist(dir, Split::kTrain);
  w.train = c.train_limit > 0 ? train->head(c.train_limit) : train;
  w.test = load_fashion_mnist(dir, Split::kTest);
  return w;
}

std::vector<StepReport> train_steps(Network& model, Accumulator& accumulator, const Dataset& data,
                                    const WindowSampler& sampler, int64_t steps, const at::Device& device,
                                    LoopPosition& pos, const StepCallback& on_step, const AccumSchedule* accum_schedule,
                                    Precision precision) {
  std::vector<StepReport> reports;
  reports.reserve(steps);
  install_cpu_memory_counter();  // idempotent; run_training installs it before the model exists
  model.train();
  const BatchPlan& plan = sampler.plan();
  const int64_t n = sampler.dataset_size();
  std::vector<int64_t> order = sampler.epoch_order(pos.epoch);
  auto next_epoch = [&] {
    pos.window = pos.offset = 0;
    order = sampler.epoch_order(++pos.epoch);
  };
  for (int64_t s = 0; s < steps; ++s) {
    const auto start = std::chrono::steady_clock::now();
    // Which examples this window holds: the next `global` of the epoch's order (fewer at its end).
    const int64_t accum = accum_schedule ? accum_schedule->at(accumulator.steps_taken()) : plan.accumulation_steps;
    const int64_t global = plan.micro_batch * accum * plan.world_size;
    if (sampler.drop_partial() && n - pos.offset < global) {
      if (pos.offset == 0) throw PlanError(fmt::format("a window of {} examples does not fit the {} examples", global, n));
      next_epoch();
    }
    const Window window = sampler.window_at(order, pos.epoch, pos.window, pos.offset, accum);
    reset_memory_peak(device);

    // Forward and backward, one micro-batch at a time: only one micro-batch of activations lives.
    for (const std::vector<int64_t>& indices : window.micro_batches) {
      if (indices.empty()) {  // this rank's share of a short window ran out
        accumulator.empty_micro_batch();
        continue;
      }
      const Batch batch = data.gather(indices).to(device);
      at::Tensor loss_sum;
      {
        AutocastGuard autocast(device.type(), precision);
        loss_sum = summed_cross_entropy(model.forward(batch.inputs), batch.targets);
      }
      accumulator.accumulate(loss_sum, batch.samples, batch.items);
    }
    // Window boundary: exact normalization, clip, optimizer and schedule step.
    StepReport report = accumulator.step();
    report.peak_bytes = memory_reading(device).peak_bytes;  // allocator statistics: no device sync
    reports.push_back(report);

    // An epoch ends when its examples run out; with `drop`, when the rest is too short for the
    // next window (checked before that window runs, above).
    const int64_t epoch = pos.epoch;
    ++pos.window;
    pos.offset += window.global_samples;
    if (pos.offset == n) next_epoch();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_step && !on_step(report, StepContext{epoch, seconds, pos})) break;
  }
  return reports;
}

namespace {

// Calls fn(batch, logits) for consecutive batches of `data`, in eval mode and without gradients.
template <typename Fn>
void for_each_eval_batch(Network& model, const Dataset& data, const at::Device& device, int64_t batch,
                         Precision precision, Fn fn) {
  torch::NoGradGuard no_grad;
  AutocastGuard autocast(device.type(), precision);
  const bool was_training = model.is_training();
  model.eval();
  std::vector<int64_t> idx;
  for (int64_t start = 0; start < data.size(); start += batch) {
    idx.clear();
    for (int64_t i = start; i < std::min(start + batch, data.size()); ++i) idx.push_back(i);
    const Batch b = data.gather(idx).to(device);
    fn(b, model.forward(b.inputs));
  }
  model.train(was_training);
}

}  // namespace

double evaluate_loss(Network& model, const Dataset& data, const at::Device& device, int64_t batch, Precision precision) {
  double total = 0.0;
  int64_t items = 0;
  for_each_eval_batch(model, data, device, batch, precision, [&](const Batch& b, const at::Tensor& logits) {
    total += summed_cross_entropy(logits, b.targets).item<double>();
    items += b.items;
  });
  return items > 0 ? total / static_cast<double>(items) : 0.0;
}

double evaluate_accuracy(Network& model, const Dataset& data, const at::Device& device, int64_t batch,
                         Precision precision) {
  int64_t correct = 0;
  for_each_eval_batch(model, data, device, batch, precision, [&](const Batch& b, const at::Tensor& logits) {
    correct += at::argmax(logits, -1).eq(b.targets).sum().item<int64_t>();
  });
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

RunSetup make_run_setup(const TrainConfig& c, const Dataset& train, bool text) {
  validate(c);
  RunSetup r;
  r.plan = BatchPlan::resolve(c.batch);
  r.sampler = WindowSamplerOptions{c.shuffle, c.seed, c.drop_partial, 0};
  if (r.plan.micro_batch > train.size()) {
    throw ConfigError(fmt::format("micro-batch of {} is larger than the training data ({} examples)", r.plan.micro_batch, train.size()));
  }
  const EpochLayout layout = EpochLayout::of(r.plan, train.size(), c.drop_partial);
  r.total_steps = c.steps ? *c.steps : c.epochs.value_or(1) * layout.windows();
  try {
    r.device = resolve_device(c.device);
    if (r.device.is_cuda()) set_cuda_tf32(c.tf32);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  // Pre-scale by the samples of a full window: per-sample windows then need no rescale at all.
  r.accumulator = AccumulatorOptions()
                      .normalization_(text ? Normalization::kPerItem : Normalization::kPerSample)
                      .max_grad_norm_(c.clip)
                      .nominal_count_(r.plan.global_batch);
  const int64_t default_warmup = c.schedule == ScheduleKind::kConstant ? 0 : r.total_steps / 20;
  r.schedule = LrScheduleOptions{c.schedule, c.optimizer.lr, c.warmup.value_or(default_warmup), r.total_steps, c.min_lr};

  r.precision = c.resolved_precision();
  if (c.param_dtype != Precision::kFp32) {
    (c.grad_accum_dtype == Precision::kFp32 ? r.master_params : r.param_dtype) = scalar_type(c.param_dtype);
  }
  if (r.precision == Precision::kFp16) {
    LossScalerOptions o;
    if (c.loss_scale_init) o.init_scale = *c.loss_scale_init;
    if (c.loss_scale_growth) o.growth_factor = *c.loss_scale_growth;
    if (c.loss_scale_backoff) o.backoff_factor = *c.loss_scale_backoff;
    if (c.loss_scale_interval) o.growth_interval = *c.loss_scale_interval;
    try {
      LossScaler check(o);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(e.what());
    }
    r.loss_scaler = o;
  }
  return r;
}

TrainingStack make_training_stack(const TrainConfig& c, const RunSetup& setup, int64_t num_classes,
                                  const AccumulatorOptions& accumulator_options) {
  TrainingStack t;
  t.model = make_seeded_model(c, num_classes);
  t.model->to(setup.device);
  std::vector<at::Tensor> updated = t.model->parameters();
  if (setup.master_params) {
    t.master = std::make_unique<MasterWeights>(*t.model, *setup.master_params);
    updated = t.master->masters();
  } else if (setup.param_dtype) {
    t.model->to(*setup.param_dtype);
    updated = t.model->parameters();
  }
  t.optimizer = make_optimizer(updated, c.optimizer);
  t.schedule = std::make_unique<LrSchedule>(setup.schedule);
  if (setup.loss_scaler) t.scaler = std::make_unique<LossScaler>(*setup.loss_scaler);
  t.accumulator = std::make_unique<Accumulator>(*t.model, *t.optimizer, t.schedule.get(), accumulator_options,
                                                t.master.get(), t.scaler.get());
  return t;
}

StringMap model_metadata(const ModelSpec& m) {
  StringMap meta = {{"format", "pt"}, {"model", m.name}, {"norm", to_string(m.resolved_norm())}};
  if (m.name == "gpt") {
    meta["layers"] = std::to_string(m.layers);
    meta["heads"] = std::to_string(m.heads);
    meta["dim"] = std::to_string(m.dim);
    meta["context"] = std::to_string(m.context);
  }
  return meta;
}

ModelSpec spec_from_metadata(const StringMap& meta, const std::string& path) {
  auto need = [&](const std::string& key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) throw FormatError(fmt::format("{}: metadata has no '{}' (was it saved by gradacc train --save?)", path, key));
    return it->second;
  };
  auto number = [&](const std::string& key) {
    const std::string& v = need(key);
    try {
      size_t used = 0;
      const int64_t n = std::stoll(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return n;
    } catch (const std::exception&) {
      throw FormatError(fmt::format("{}: metadata '{}' = '{}' is not an integer", path, key, v));
    }
  };
  ModelSpec m;
  m.name = need("model");
  try {
    m.norm = parse_norm(need("norm"));
  } catch (const std::invalid_argument& e) {
    throw FormatError(fmt::format("{}: metadata: {}", path, e.what()));
  }
  if (m.name == "gpt") {
    m.layers = number("layers");
    m.heads = number("heads");
    m.dim = number("dim");
    m.context = number("context");
  }
  try {
    m.validate();
  } catch (const std::invalid_argument& e) {
    throw FormatError(fmt::format("{}: metadata: {}", path, e.what()));
  }
  return m;
}

std::shared_ptr<Network> make_seeded_model(const TrainConfig& c, int64_t num_classes) {
  torch::manual_seed(c.seed);
  auto model = make_model(c.model, num_classes);
  if (!c.init_path.empty()) load_module(c.init_path, *model);
  return model;
}

std::string batchnorm_warning(const TrainConfig& c, const BatchPlan& plan) {
  if (c.model.resolved_norm() != NormKind::kBatch || c.model.name != "cnn" || plan.accumulation_steps == 1) return "";
  return fmt::format(
      "warning: BatchNorm normalizes each micro-batch of {} with that micro-batch's own mean and variance, "
      "so accumulating {} micro-batches is not the same as training on batches of {} (and its running "
      "statistics update {} times per optimizer step); use --norm group (or layer) for exact accumulation",
      plan.micro_batch, plan.accumulation_steps, plan.global_batch / plan.world_size, plan.accumulation_steps);
}

namespace {

// SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption) while checkpointing: finish the window, save a
// checkpoint, stop. A second signal takes the default action (the handler resets itself).
volatile std::sig_atomic_t g_interrupt = 0;

extern "C" void on_interrupt(int sig) {
  g_interrupt = sig;
  std::signal(sig, SIG_DFL);
}

class InterruptGuard {
 public:
  explicit InterruptGuard(bool enable) : enabled_(enable) {
    g_interrupt = 0;
    if (!enabled_) return;
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sa.sa_flags = SA_RESTART;  // a rank blocked in a collective keeps waiting; the flag is read at the boundary
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~InterruptGuard() {
    if (!enabled_) return;
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  bool enabled_;
  struct sigaction old_int_ {}, old_term_ {};
};

void require_writable_parent(const std::string& file) {
  const std::filesystem::path dir = std::filesystem::path(file).parent_path();
  const std::string d = dir.empty() ? "." : dir.string();
  if (!std::filesystem::is_directory(d) || ::access(d.c_str(), W_OK) != 0) {
    throw ConfigError(fmt::format("cannot create {}: directory {} does not exist or is not writable", file, d));
  }
}

}  // namespace

// What must agree between ranks, one "key=value" per line (compared through the store at start).
static std::string run_description(const TrainConfig& c, const RunSetup& setup, int64_t train_examples, bool text) {
  std::string d;
  for (const auto& [k, v] : run_identity(c, setup.plan, train_examples, text)) d += k + "=" + v + "\n";
  d += fmt::format("data={}\nsteps={}\nlr={}\nschedule={}\nwarmup={}\nmin_lr={}\nclip={}\nweight_decay={}\nsync={}\n", c.data,
                   setup.total_steps, c.optimizer.lr, to_string(c.schedule), setup.schedule.warmup_steps, c.min_lr, c.clip,
                   c.optimizer.weight_decay, to_string(c.sync));
  d += fmt::format("resume={}\nstop_at={}\n", c.resume_path, c.stop_at.value_or(0));
  return d;
}

static std::string precision_summary(const TrainConfig& c, const RunSetup& setup) {
  if (setup.precision == Precision::kFp32) return "";
  std::string s = fmt::format(" precision={}", to_string(setup.precision));
  if (c.param_dtype != Precision::kFp32) {
    s += fmt::format(" params={} grad_accum={}", to_string(c.param_dtype), to_string(c.grad_accum_dtype));
  }
  if (setup.loss_scaler) s += fmt::format(" loss_scale={}", setup.loss_scaler->init_scale);
  return s;
}

static std::string skipped_note(const TrainingStack& stack) {
  if (!stack.scaler) return "";
  return fmt::format("; {} step(s) skipped on fp16 overflow, final loss scale {}", stack.scaler->skipped_steps(),
                     stack.scaler->scale());
}

// State beyond the model and optimizer that a checkpoint must carry: the fp32 master weights.
static TensorMap checkpoint_tensors(const TrainingStack& stack) {
  if (!stack.master) return {};
  return {{"master_weights", stack.master->flat_masters()}};
}

TrainSummary run_training(const TrainConfig& config, std::ostream& out) {
  validate(config);
  install_cpu_memory_counter();  // before any tensor of the run exists, so all of them are counted
  TrainConfig c = config;
  // Fail before training, not after it.
  if (!c.save_path.empty()) require_writable_parent(c.save_path);
  std::string resume_from;
  if (!c.resume_path.empty()) {
    resume_from = resolve_checkpoint(c.resume_path);
    if (c.checkpoint_dir.empty()) c.checkpoint_dir = std::filesystem::path(resume_from).parent_path().string();
  }
  if (!c.checkpoint_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(c.checkpoint_dir, ec);
    if (ec || ::access(c.checkpoint_dir.c_str(), W_OK) != 0) {
      throw ConfigError(fmt::format("cannot use checkpoint directory {}: {}", c.checkpoint_dir,
                                    ec ? ec.message() : "not writable"));
    }
  }
  if (c.threads > 0) at::set_num_threads(c.threads);

  // Data parallel: the torchrun environment names this process's rank. Rank 0 alone logs,
  // checkpoints, evaluates and saves; every rank trains on its shard of each window.
  const DistEnv env = DistEnv::from_environment();
  if (c.batch.world_size && *c.batch.world_size != env.world_size) {
    throw ConfigError(fmt::format("world_size is {} in the config, but WORLD_SIZE is {}", *c.batch.world_size, env.world_size));
  }
  c.batch.world_size = env.world_size;
  const bool lead = env.rank == 0;
  std::ostringstream quiet;
  std::ostream& say = lead ? out : quiet;
  if (!lead) {
    c.log_path.clear();
    c.save_path.clear();
  }

  const Workload work = load_workload(c);
  RunSetup setup = make_run_setup(c, *work.train, work.text);
  setup.sampler.rank = env.rank;
  if (const std::string w = batchnorm_warning(c, setup.plan); !w.empty()) say << w << "\n";
  std::unique_ptr<Communicator> comm;
  if (env.distributed()) {
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(c.dist_timeout * 1000));
    comm = std::make_unique<Communicator>(
        env, CommunicatorOptions().timeout_(timeout).bucket_bytes_(static_cast<int64_t>(c.bucket_mb * (1 << 20))));
    comm->check_same_config(run_description(c, setup, work.train->size(), work.text));
  }

  TrainingStack stack = make_training_stack(c, setup, work.train->num_classes(), setup.accumulator);
  Network* model = stack.model.get();
  torch::optim::Optimizer* optimizer = stack.optimizer.get();
  Accumulator& accumulator = *stack.accumulator;
  accumulator.set_reducer(comm.get(), c.sync);
  accumulator.set_stop_signal(&g_interrupt);
  const WindowSampler sampler(work.train->size(), setup.plan, setup.sampler);
  const std::optional<AccumSchedule> accum_schedule =
      c.accum_schedule.empty() ? std::nullopt : std::optional<AccumSchedule>(AccumSchedule::parse(c.accum_schedule));
  const StringMap identity = run_identity(c, setup.plan, work.train->size(), work.text);

  // Resume: weights, optimizer state, RNG, step count and data position from the checkpoint.
  LoopPosition pos;
  if (!resume_from.empty()) {
    const CheckpointState state = load_checkpoint(resume_from, *model, *optimizer, identity, checkpoint_tensors(stack));
    accumulator.resume_at(state.step, state.updates);
    if (stack.scaler) {
      try {
        stack.scaler->load_state(state.extra);
      } catch (const std::invalid_argument& e) {
        throw CheckpointError(fmt::format("{}: {}", resume_from, e.what()));
      }
    }
    pos = state.position;
    say << fmt::format("resumed from {} at step {} (epoch {}, example {} of its order)\n", resume_from, state.step,
                       pos.epoch, pos.offset);
  }
  const int64_t first_step = accumulator.steps_taken();
  const int64_t last_step = std::min(setup.total_steps, c.stop_at.value_or(setup.total_steps));
  StepLog log(c.log_path, resume_from.empty() ? std::nullopt : std::optional<int64_t>(first_step));

  std::string last_checkpoint;
  bool stopped_by_request = false;
  auto checkpoint = [&](const LoopPosition& next) {
    CheckpointState state;
    state.step = accumulator.steps_taken();
    state.updates = accumulator.updates_applied();
    state.position = next;
    if (stack.scaler) state.extra = stack.scaler->state();
    state.tensors = checkpoint_tensors(stack);
    last_checkpoint = save_checkpoint(c.checkpoint_dir, state, *model, *optimizer, identity, c.keep_checkpoints);
  };

  say << fmt::format("gradacc train: model={} norm={} data={} ({} examples) {} steps={} optimizer={} lr={}{}\n",
                     c.model.name, to_string(c.model.resolved_norm()), c.data, work.train->size(), describe(setup.plan),
                     setup.total_steps, c.optimizer.name, c.optimizer.lr, precision_summary(c, setup));
  const auto start = std::chrono::steady_clock::now();
  std::vector<StepReport> reports;
  {
    // A signal on any rank stops every rank after the same window (the request rides in the
    // all-reduce); rank 0 checkpoints that step.
    InterruptGuard interrupts(!c.checkpoint_dir.empty());
    ProgressBar bar(lead ? setup.total_steps : 0, first_step);
    reports = train_steps(*model, accumulator, *work.train, sampler, std::max<int64_t>(0, last_step - first_step),
                          setup.device, pos,
                          [&](const StepReport& r, const StepContext& ctx) {
                            log.write(r, ctx.epoch, ctx.seconds);
                            bar.update(r.step, r.loss);
                            const bool stop = r.stop_requested;
                            if (stop) stopped_by_request = true;
                            const bool due = c.save_every > 0 && r.step % c.save_every == 0;
                            if (lead && !c.checkpoint_dir.empty() && (stop || due || r.step == last_step)) checkpoint(ctx.next);
                            return !stop;
                          },
                          accum_schedule ? &*accum_schedule : nullptr, setup.precision);
  }
  TrainSummary s;
  s.plan = setup.plan;
  s.steps = accumulator.steps_taken();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  s.final_loss = reports.empty() ? 0.0 : reports.back().loss;
  s.checkpoint = last_checkpoint;
  s.skipped_steps = stack.scaler ? stack.scaler->skipped_steps() : 0;
  if (stopped_by_request || s.steps < setup.total_steps) {
    s.stopped_early = true;
    // Stopped for another rank's signal: exit as if this one had been sent SIGTERM too.
    s.interrupted_by = stopped_by_request ? (g_interrupt != 0 ? static_cast<int>(g_interrupt) : SIGTERM) : 0;
    const std::string why = !stopped_by_request       ? "stopped as asked (--stop-at)"
                            : g_interrupt == SIGINT  ? "interrupted (SIGINT)"
                            : g_interrupt == SIGTERM ? "interrupted (SIGTERM)"
                                                     : "stopped because another rank was interrupted";
    say << fmt::format("{} after step {} of {}; checkpoint {}; continue with --resume {}\n", why, s.steps,
                       setup.total_steps, last_checkpoint.empty() ? "(none)" : last_checkpoint, c.checkpoint_dir);
    return s;
  }
  if (!lead) return s;  // rank 0 evaluates, saves and reports
  if (!c.save_path.empty()) save_module(c.save_path, *model, model_metadata(c.model));
  if (work.text) {
    s.validation_loss = work.test->size() > 0 ? evaluate_loss(*model, *work.test, setup.device, 64, setup.precision) : 0.0;
    s.bits_per_byte = s.validation_loss / std::log(2.0);
    s.unigram_bits_per_byte = work.unigram_bits_per_byte;
    log.write_raw(fmt::format(R"({{"event":"eval","split":"validation","loss":{},"bits_per_byte":{},"unigram_bits_per_byte":{},"sequences":{}}})",
                              s.validation_loss, s.bits_per_byte, s.unigram_bits_per_byte, work.test->size()));
    out << fmt::format("trained {} optimizer steps in {:.1f} s; last window loss {:.4f}; validation {:.4f} bits/byte "
                       "(unigram baseline {:.4f}){}\n", s.steps, s.seconds, s.final_loss, s.bits_per_byte,
                       s.unigram_bits_per_byte, skipped_note(stack));
    return s;
  }
  s.test_accuracy = evaluate_accuracy(*model, *work.test, setup.device, 1000, setup.precision);
  log.write_raw(fmt::format(R"({{"event":"eval","split":"test","accuracy":{},"examples":{}}})", s.test_accuracy,
                            work.test->size()));
  out << fmt::format("trained {} optimizer steps in {:.1f} s; last window loss {:.4f}; test accuracy {:.4f}{}\n", s.steps,
                     s.seconds, s.final_loss, s.test_accuracy, skipped_note(stack));
  return s;
}

}  // namespace gradacc
