// The Trainer wires one run's parts (in dependency order: model → masters → optimizer → schedule →
// scaler → accumulator → communicator) and drives train_steps() with a callback that logs,
// checkpoints and honours stop requests.
#include "gradacc/trainer.h"
#include "accumulate/accumulator.h"
#include "precision/loss_scaler.h"
#include "train/run_plan.h"
#include "train/train_loop.h"
#include "train/trainer_state.h"
#include "train/zero_choice.h"

#include <algorithm>
#include <chrono>
#include <iostream>

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "checkpoint/checkpointer.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "gradacc/safetensors.h"
#include "log/progress.h"
#include "memory/planner.h"
#include "precision/master_weights.h"
#include "sync/communicator.h"
#include "train/evaluation.h"
#include "train/interrupts.h"
#include "train/loss_check.h"

namespace gradacc {

namespace {

// The CPU allocator's ceiling for as long as it lives; the previous one back afterwards.
class CpuMemoryLimit {
 public:
  explicit CpuMemoryLimit(int64_t bytes) : previous_(cpu_memory_limit()) { set_cpu_memory_limit(bytes); }
  ~CpuMemoryLimit() { set_cpu_memory_limit(previous_); }
  CpuMemoryLimit(const CpuMemoryLimit&) = delete;
  CpuMemoryLimit& operator=(const CpuMemoryLimit&) = delete;

 private:
  int64_t previous_;
};

RunPlan resolve_for(const TrainOptions& options, const Dataset* data) {
  if (data == nullptr) throw ConfigError("the Trainer needs a dataset");
  return resolve_run(options, DistEnv::from_environment(), data->size());
}

}  // namespace

Trainer::Trainer(Model model, OptimizerFactory make_optimizer, std::shared_ptr<const Dataset> data,
                 TrainOptions options, LossFn loss)
    : Trainer(std::move(model), std::move(make_optimizer), std::move(data), std::move(options), std::move(loss),
              std::nullopt) {}

Trainer::Trainer(Model model, OptimizerFactory make_optimizer, std::shared_ptr<const Dataset> data,
                 TrainOptions options, LossFn loss, std::optional<WindowLoss> window_loss) {
  if (!model.module || !model.forward) throw ConfigError("the Trainer needs a model: Model::of(module)");
  if (!make_optimizer) throw ConfigError("the Trainer needs an optimizer factory");
  if (!loss) throw ConfigError("the Trainer needs a loss function");
  if (window_loss) check_window_loss(*window_loss, options, data.get());
  RunPlan resolved = resolve_for(options, data.get());
  s_ = std::make_unique<State>(std::move(model), std::move(data), std::move(loss), std::move(resolved));
  s_->window_loss = std::move(window_loss);
  const RunPlan& p = s_->plan();
  if (p.requested.device().threads() > 0) at::set_num_threads(static_cast<int>(p.requested.device().threads()));
  if (p.device.is_cuda()) set_cuda_tf32(p.requested.device().tf32());
  install_cpu_memory_counter();

  torch::nn::Module& module = *s_->model.module;
  // What the ranks compare besides the options: the initial weights themselves (another --init,
  // seed or model code on one rank would otherwise train apart unnoticed).
  const std::string initial_weights = p.env.distributed() ? weights_fingerprint(module) : "";
  module.to(p.device);
  std::vector<at::Tensor> updated;
  for (const at::Tensor& t : module.parameters()) {
    if (t.requires_grad()) updated.push_back(t);
  }
  if (p.distributed.zero) {
    // The optimizer is built over this rank's shard alone: one flat fp32 tensor. ZeRO-3 lays the
    // parameters out unit by unit (the model's blocks, then the rest).
    std::vector<std::vector<int64_t>> units;
    if (p.distributed.zero == 3) units = zero3_units(s_->model, updated, s_->warnings);
    const bool has_root = s_->model.units && units.size() > s_->model.units->size();
    s_->zero = std::make_unique<ZeroShard>(module, p.env.rank, p.env.world_size, p.precision.master_params,
                                           p.distributed.zero, std::move(units), has_root);
    updated = {s_->zero->shard_param()};
  } else if (p.precision.master_params) {
    s_->master = std::make_unique<MasterWeights>(module, *p.precision.master_params);
    updated = s_->master->masters();
  } else if (p.precision.param_dtype) {
    module.to(*p.precision.param_dtype);
    updated.clear();
    for (const at::Tensor& t : module.parameters()) {
      if (t.requires_grad()) updated.push_back(t);
    }
  }
  // The loss's declared reduction, checked once; a mean is turned back into the sum the
  // accumulator divides once by the window's count (one scalar multiply per micro-batch).
  if (!s_->window_loss)
    check_loss_reduction(s_->model, s_->loss, *s_->data, p.batch.micro_batch, options.batch().loss_reduction(),
                         p.device, p.precision.compute);
  if (options.batch().loss_reduction() == LossReduction::kMean) {
    s_->loss = [mean = std::move(s_->loss)](const at::Tensor& outputs, const Batch& b) {
      return mean(outputs, b) * static_cast<double>(b.items);
    };
  }
  try {
    s_->optimizer = make_optimizer(updated);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  if (!s_->optimizer || s_->optimizer->param_groups().empty())
    throw ConfigError("the optimizer factory returned no optimizer");
  if (s_->zero && !elementwise_optimizer(*s_->optimizer)) {
    throw ConfigError(fmt::format(
        "zero {} shards elementwise optimizers (sgd, adam, adamw): {} is not one, so it cannot be sharded by elements",
        p.distributed.zero, optimizer_kind(*s_->optimizer)));
  }
  const double peak_lr = s_->optimizer->param_groups().front().options().get_lr();
  try {
    s_->schedule = std::make_unique<LrSchedule>(p.lr_schedule(peak_lr));
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  if (p.precision.loss_scaler) s_->scaler = std::make_unique<LossScaler>(*p.precision.loss_scaler);
  try {
    s_->accumulator = std::make_unique<Accumulator>(module, *s_->optimizer, s_->schedule.get(), p.accumulator_options(),
                                                    s_->master.get(), s_->scaler.get(), s_->zero.get());
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  // ZeRO-2's buckets before any probe: the memory planner measures them.
  if (p.distributed.zero >= 2) s_->accumulator->set_overlap(p.distributed.bucket_bytes);
  if (p.distributed.zero == 3) {
    s_->gather = std::make_unique<ParameterGather>(*s_->zero, s_->model.units, nullptr, p.distributed.gather);
    s_->accumulator->set_parameter_gather(s_->gather.get());
    s_->accumulator->set_accumulate_unsharded(p.distributed.gather.keep_for_window);
  }

  // Token budgets cut by each example's length: read once, checked before any memory probe.
  std::shared_ptr<const std::vector<int64_t>> lengths;
  if (p.micro_batch_tokens) {
    lengths = std::make_shared<const std::vector<int64_t>>(s_->data->lengths());
    if (lengths->empty()) {
      throw ConfigError("micro_batching tokens:N needs sequence data (text): these examples have no lengths to cut by");
    }
  }
  // Memory: with a budget, measure this model, data and optimizer and choose the micro-batch (and
  // checkpointing); the plan is then resolved again with it, once, before anything reads it.
  if (p.memory.budget()) {
    MemoryPlanRequest request{*p.memory.budget(), p.batch.global_batch, p.batch.world_size, p.requested_micro_batch,
                              p.memory.activation_checkpointing()};
    request.token_budget = p.micro_batch_tokens.has_value();
    request.zero_stage = p.distributed.zero;
    if (p.micro_batch_tokens.value_or(0) > 0) request.tokens = p.micro_batch_tokens;
    // Planned on this accumulator; `zero auto` makes it again for ZeRO-2 (the same shard layout).
    const auto plan_on = [&](int stage, const MemoryPlanRequest& asked) {
      if (s_->zero && stage != s_->zero->stage()) {
        s_->zero->set_stage(stage);
        s_->accumulator.reset();  // its hooks go before the new one sets its own
        s_->accumulator =
            std::make_unique<Accumulator>(module, *s_->optimizer, s_->schedule.get(), p.accumulator_options(), nullptr,
                                          s_->scaler.get(), s_->zero.get());
        if (stage == 2) s_->accumulator->set_overlap(p.distributed.bucket_bytes);
      }
      // ZeRO-3 is measured sharded: 1/R of the parameters static, the units gathered per probe.
      if (s_->gather) s_->gather->shard();
      return plan_memory({s_->model, s_->loss, *s_->data, *s_->accumulator, *s_->optimizer, p.device,
                          p.precision.compute, s_->gather.get(), s_->window_loss ? &*s_->window_loss : nullptr},
                         asked);
    };
    Zero3Mode mode = zero3_mode(p.distributed.gather);
    const auto use_mode = [&](Zero3Mode m) {
      s_->gather->set_options(gather_options(m, p.distributed.gather.prefetch));
      s_->accumulator->set_accumulate_unsharded(m == Zero3Mode::kKeepForWindow);
    };
    if (p.distributed.zero_auto) {
      s_->memory_plan =
          choose_zero_stage([&](int stage) { return plan_on(stage, request); }, *s_->zero, p.distributed.bucket_bytes);
    } else if (p.distributed.zero == 3) {
      // The three modes measured; the planner keeps the one that communicates least, if it may and it fits.
      const Zero3Planner plan_with = [&](Zero3Mode m, const MemoryPlan* at, bool any_budget) {
        use_mode(m);
        MemoryPlanRequest r = request;
        if (at) {  // at that plan's micro-batch (or token budget) and checkpointing
          r.checkpointing = at->checkpointing;
          if (r.token_budget)
            r.tokens = at->micro_batch_tokens;
          else
            r.micro_batch = at->micro_batch;
          if (any_budget) r.budget_bytes = int64_t{1} << 50;
        }
        MemoryPlan m_plan = plan_on(3, r);
        m_plan.budget_bytes = request.budget_bytes;
        return m_plan;
      };
      const int64_t declared = s_->model.units ? static_cast<int64_t>(s_->model.units->size()) : 0;
      s_->memory_plan = plan_zero3(plan_with, *s_->zero, declared, mode, p.distributed.zero3_auto);
      use_mode(mode);
    } else {
      s_->memory_plan = plan_on(p.distributed.zero, request);
      if (s_->zero) cost_zero_stages(*s_->memory_plan, *s_->zero, p.distributed.zero, p.distributed.bucket_bytes);
    }
    TrainOptions planned = options;
    if (s_->zero) planned.distributed().zero(s_->zero->stage());
    if (p.distributed.zero == 3) {
      planned.distributed().reshard_after_forward(mode == Zero3Mode::kReshard);
      planned.distributed().accumulate_unsharded(mode == Zero3Mode::kKeepForWindow);
    }
    if (request.token_budget) {
      planned.batch().micro_batch_tokens(s_->memory_plan->micro_batch_tokens);
    } else {
      planned.batch().micro_batch(s_->memory_plan->micro_batch).accumulation_steps(std::nullopt);
    }
    planned.memory().activation_checkpointing(s_->memory_plan->checkpointing);
    s_->run_plan.emplace(resolve_for(planned, s_->data.get()));
    // The accumulator's options follow the plan (the naive scheme's count is its accumulation).
    s_->accumulator->set_options(s_->plan().accumulator_options());
  }
  const RunPlan& plan = s_->plan();
  if (plan.memory.activation_checkpointing().value_or(false)) {
    if (!s_->model.set_activation_checkpointing || !s_->model.set_activation_checkpointing(true)) {
      throw ConfigError(
          "activation_checkpointing: this model has no blocks to checkpoint (gradacc's gpt and cnn have; a model of "
          "your own offers it with a method bool set_activation_checkpointing(bool))");
    }
  }
  s_->sampler.emplace(plan.dataset_size, plan.batch, plan.sampler,
                      token_budget(plan, std::move(lengths), s_->data->packed_row_length()));
  if (plan.logging.noise_scale()) {
    if (plan.batch.accumulation_steps == 1 && plan.batch.world_size == 1) {
      throw ConfigError(
          "noise_scale needs a window of more than one micro-batch: the planned accumulation is 1 and world_size is 1");
    }
    s_->noise = std::make_unique<NoiseScaleEstimator>(plan.logging.noise_scale_ema());
  }
  if (plan.auto_accum) s_->auto_accum = std::make_unique<AutoAccum>(*plan.auto_accum);
  s_->lr_scaler = make_lr_scaler(plan, *s_->data, s_->noise.get(), optimizer_kind(*s_->optimizer));

  const std::string kind = optimizer_kind(*s_->optimizer);
  if (plan.env.distributed()) {
    s_->communicator = std::make_unique<Communicator>(
        plan.env,
        CommunicatorOptions()
            .timeout_(std::chrono::milliseconds(static_cast<int64_t>(plan.distributed.timeout_seconds * 1000)))
            .bucket_bytes_(plan.distributed.bucket_bytes)
            .device_(plan.device));
    s_->communicator->check_same_config(plan.rank_description(kind) + optimizer_hyperparameters(*s_->optimizer) + "\n" +
                                        "initial weights crc32=" + initial_weights + "\n");
    if (plan.distributed.comm_dtype != Precision::kFp32)  // gradients on a 16-bit wire, summed in fp32
      s_->compressed = std::make_unique<CompressedReducer>(*s_->communicator, scalar_type(plan.distributed.comm_dtype));
  }
  try {
    GradientReducer* gradients =
        s_->compressed ? static_cast<GradientReducer*>(s_->compressed.get()) : s_->communicator.get();
    s_->accumulator->set_reducer(gradients, plan.distributed.sync);
    if (s_->gather) s_->gather->set_reducer(s_->communicator.get());
    if (plan.distributed.overlap && !plan.distributed.zero) s_->accumulator->set_overlap(plan.distributed.bucket_bytes);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  try {
    s_->accumulator->set_noise_scale(s_->noise.get());
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  s_->checkpointer = std::make_unique<Checkpointer>(plan.checkpoint, plan.run_identity(kind), plan.lead(), plan.device);
  for (Stateful* part :
       std::initializer_list<Stateful*>{s_->accumulator.get(), &s_->cursor, s_->scaler.get(), s_->noise.get(),
                                        s_->auto_accum.get(), s_->lr_scaler.get(),
                                        // the fp32 masters: under ZeRO this rank's slice, else all of them
                                        s_->zero ? static_cast<Stateful*>(s_->zero.get()) : s_->master.get()}) {
    if (part) s_->checkpointer->track(*part);
  }
  if (s_->zero) {
    const ZeroShard& z = *s_->zero;
    ShardSlot slot{z.rank(), z.world_size(), z.offset(), z.length(), z.total(), {}};
    if (z.stage() == 3) {
      for (const ZeroShard::OwnedRange& r : z.owned_ranges())
        slot.ranges.push_back(ShardSlot::Range{r.element, r.shard_offset, r.length});
    }
    Communicator* c = s_->communicator.get();
    s_->checkpointer->set_sharding(slot, [c](bool ok) { return c->all_agree(ok); });
    if (z.stage() == 3)
      s_->checkpointer->set_parameter_shards([zero = s_->zero.get()] { return zero->gather_input(); },
                                             [c](int64_t x) { return c->all_sum(x); });
  }
  if (std::string w = batchnorm_warning(module, plan.batch); !w.empty()) s_->warnings.push_back(std::move(w));
  for (const std::string& note : plan.notes) s_->warnings.push_back(note);
}

Trainer::~Trainer() = default;

TrainResult Trainer::fit() {
  State& s = *s_;
  const RunPlan& p = s.plan();
  TrainResult result;
  // A signal on any rank stops every rank after the same window (the request rides in the
  // all-reduce); rank 0 checkpoints that step.
  InterruptGuard interrupts(s.checkpointer->enabled());
  s.accumulator->set_stop_signal(InterruptGuard::flag());

  // A checkpoint loads into the whole model: ZeRO-3 left sharded by the memory planner is made
  // whole first (its shards hold the weights).
  if (s.gather && s.gather->sharded() && !p.checkpoint.resume_from.empty()) s.gather->unshard();
  if (s.checkpointer->resume(*s.model.module, *s.optimizer)) {  // the accumulator's steps, the cursor...
    result.resumed_from = p.checkpoint.resume_from;
    // ZeRO-3 (whole between runs): an fp32 model's shard is its slice of the weights just loaded
    // (a bf16/fp16 model's shard is the fp32 masters, loaded as such).
    if (s.gather && !s.zero->low_precision()) s.zero->take_shard_from_units();
  }
  if (s.gather) {
    s.zero->refresh_gather_input();
    s.gather->shard();  // from here each rank keeps 1/R of the parameters
  }
  result.first_step = s.accumulator->steps_taken();
  s.log = open_run_log(p, *s.optimizer, s.communicator.get(), result.first_step, !result.resumed_from.empty());

  bool stopped_by_request = false, stopped_by_callback = false;
  const auto start = std::chrono::steady_clock::now();
  {
    ProgressBar bar(p.logging.progress() ? p.total_steps : 0, result.first_step);
    const StepCallback on_step = [&](const StepReport& r, const StepContext& ctx) {
      s.log->step(r, ctx.epoch, ctx.seconds);
      bar.update(r.step, r.loss);
      if (p.logging.print_every() > 0 && r.step % p.logging.print_every() == 0) {
        std::cout << fmt::format("step {}/{} loss {:.6f} lr {:.6g} grad_norm {:.4g}{}\n", r.step, p.total_steps, r.loss,
                                 r.lr, r.grad_norm, r.skipped ? " (skipped: fp16 overflow)" : "")
                  << std::flush;
      }
      stopped_by_request = r.stop_requested;
      const bool finished = s.lr_scaler && s.lr_scaler->finished();  // AdaScale's whole schedule
      if (s.checkpointer->due(r.step, p.last_step, stopped_by_request || finished))
        s.checkpointer->save(*s.model.module, *s.optimizer);  // ZeRO-3: parameters in the shards
      for (const StepCallback& cb : s.callbacks) {
        if (!cb(r, ctx)) stopped_by_callback = true;
      }
      return !stopped_by_request && !stopped_by_callback;
    };
    const LoopParts parts{s.model,
                          s.loss,
                          *s.accumulator,
                          *s.data,
                          *s.sampler,
                          p.device,
                          p.precision.compute,
                          p.accum_schedule ? &*p.accum_schedule : nullptr,
                          s.auto_accum.get(),
                          /*replay_on_oom=*/!p.env.distributed() && !p.accum_schedule && !s.auto_accum,
                          s.gather.get(),
                          s.lr_scaler.get(),
                          s.window_loss ? &*s.window_loss : nullptr,
                          s.communicator.get()};
    // The budget is enforced on the CPU: an allocation past it fails like a GPU's, and the window
    // is replayed with half the micro-batch. (On a GPU, its own memory is the limit.)
    const CpuMemoryLimit limit(p.memory.budget() && !p.device.is_cuda() ? *p.memory.budget() : cpu_memory_limit());
    if (s.lr_scaler && !result.resumed_from.empty()) {
      if (auto note = s.lr_scaler->resume_note(planned_window(parts, result.first_step))) {
        result.lr_scale_note = *note;
        if (p.lead()) std::cout << *note << "\n" << std::flush;
      }
    }
    result.history = train_steps(parts, std::max<int64_t>(0, p.last_step - result.first_step), s.cursor.next, on_step);
  }
  s.log->flush();                     // a full disk ends the run with its error here, not silently at exit
  if (s.gather) s.gather->unshard();  // the model is whole again: evaluate it, save it, run it
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.steps = s.accumulator->steps_taken();
  result.checkpoint = s.checkpointer->last_written();
  result.skipped_steps = s.scaler ? s.scaler->skipped_steps() : 0;
  result.stopped_early = stopped_by_request || stopped_by_callback ||
                         (result.steps < p.total_steps && !(s.lr_scaler && s.lr_scaler->finished()));
  if (stopped_by_request) {
    // Stopped for another rank's signal: report it as if this one had been sent SIGTERM too.
    result.signal_here = InterruptGuard::received();
    result.interrupted_by = result.signal_here != 0 ? result.signal_here : SIGTERM;
  }
  return result;
}

}  // namespace gradacc
