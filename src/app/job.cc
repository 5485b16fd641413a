#include "app/job.h"

#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <nlohmann/json.hpp>

#include "app/contrastive.h"
#include "app/options_table.h"
#include "app/two_views.h"
#include "app/workload.h"
#include "base/files.h"
#include "base/parse.h"
#include "builtin/model_metadata.h"
#include "checkpoint/checkpoint.h"
#include "gradacc/errors.h"
#include "gradacc/safetensors.h"
#include "log/step_log.h"
#include "model/add_norm.h"
#include "precision/loss_scaler.h"
#include "train/run_plan.h"

namespace gradacc {

namespace {

// An evaluation's record in the run's log, built as JSON rather than formatted as text: a diverged
// model's NaN loss is written null, as in the step records (as text it would be `nan`: no JSON).
void log_eval(Trainer& trainer, const nlohmann::ordered_json& fields) {
  nlohmann::ordered_json record = {{"event", "eval"}};
  for (const auto& [key, value] : fields.items()) record[key] = value;
  trainer.log_record(record.dump());
}

void require_writable_parent(const std::string& file) {
  if (std::filesystem::is_directory(file))
    throw ConfigError(fmt::format("cannot write {}: it is a directory, not a file", file));
  const std::filesystem::path dir = std::filesystem::path(file).parent_path();
  const std::string d = dir.empty() ? "." : dir.string();
  if (!std::filesystem::is_directory(d) || ::access(d.c_str(), W_OK) != 0) {
    throw ConfigError(fmt::format("cannot create {}: directory {} does not exist or is not writable", file, d));
  }
}

std::shared_ptr<Network> build_model(const JobConfig& c, int64_t classes, bool* init_verified = nullptr) {
  try {
    return make_seeded_model(c, classes, init_verified);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
}

std::string precision_summary(const RunPlan& p) {
  if (p.precision.compute == Precision::kFp32) return "";
  std::string s = fmt::format(" precision={}", to_string(p.precision.compute));
  if (p.precision.master_params || p.precision.param_dtype) {
    s += fmt::format(" params={} grad_accum={}",
                     c10::toString(p.precision.master_params ? *p.precision.master_params : *p.precision.param_dtype),
                     p.precision.master_params ? "fp32" : "param dtype");
  }
  if (p.precision.loss_scaler) s += fmt::format(" loss_scale={}", p.precision.loss_scaler->init_scale);
  return s;
}

// No two of the files a job reads and writes may be the same file: --log would overwrite the
// weights, the config or the checkpoint being resumed. Checked before anything is written.
void require_distinct_paths(const JobConfig& c) {
  const TrainOptions& t = c.train;
  // With --resume auto, --init is where the first attempt starts; later ones take their checkpoint's.
  if (!c.init_path.empty() && !t.checkpoint().resume().empty() && t.checkpoint().resume() != "auto")
    throw ConfigError("--init and --resume both given: a resume restores its checkpoint's weights (drop --init)");
  const std::string resume = resolve_resume(t.checkpoint().resume(), t.checkpoint().dir());
  try {
    require_distinct_files({{"--log", t.logging().log_path()},
                            {"--save", c.save_path},
                            {"--init", c.init_path},
                            {"--config", c.config_path},
                            {"--resume", resume},
                            {"--profile", c.profile_path}});
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  namespace fs = std::filesystem;
  const std::string dir = !t.checkpoint().dir().empty() ? t.checkpoint().dir()
                          : resume.empty()              ? ""
                                                        : fs::path(resume).parent_path().string();
  for (const auto& [flag, path] :
       {std::pair<const char*, std::string>{"--log", t.logging().log_path()}, {"--save", c.save_path}}) {
    if (path.empty() || dir.empty() || checkpoint_step(path) < 0) continue;
    std::error_code ec;
    if (fs::equivalent(fs::absolute(fs::path(path)).parent_path(), fs::absolute(dir), ec)) {
      throw ConfigError(
          fmt::format("{} {} would be taken for a checkpoint of {}: choose another name", flag, path, dir));
    }
  }
}

// The job's Trainer: cross-entropy on the labels, or InfoNCE over two views of each image, the
// whole window at once (docs/contrastive.md).
void job_trainer(const JobConfig& c, const Workload& work, const std::shared_ptr<Network>& network,
                 std::optional<Trainer>& holder) {
  if (c.objective == "contrastive") {
    if (work.text) throw ConfigError("the contrastive objective embeds images: use Fashion-MNIST data, not text");
    const auto images = std::static_pointer_cast<const TensorDataset>(work.train);
    auto views = std::make_shared<TwoViews>(images, static_cast<uint64_t>(c.train.data().seed()));
    if (c.negatives == "micro-batch") {  // the naive way: each micro-batch's own InfoNCE
      const PerMicroBatchLoss naive = per_micro_batch(contrastive_loss(network, c.temperature));
      Model model = Model::of(network);
      model.forward = naive.forward;
      holder.emplace(std::move(model), optimizer_factory(c.optimizer), views, job_train_options(c), naive.loss);
      return;
    }
    holder.emplace(Model::of(network), optimizer_factory(c.optimizer), views, job_train_options(c),
                   contrastive_loss(network, c.temperature));
  } else {
    holder.emplace(Model::of(network), optimizer_factory(c.optimizer), work.train, job_train_options(c),
                   cross_entropy_loss(c.label_smoothing));
  }
}

}  // namespace

JobSummary run_train_job(const JobConfig& c, std::ostream& out) {
  require_distinct_paths(c);
  const Workload work = load_workload(c);
  bool init_verified = true;
  const bool contrastive = c.objective == "contrastive";
  if (contrastive && work.text)
    throw ConfigError("the contrastive objective embeds images: use Fashion-MNIST data, not text");
  if (contrastive && c.eval_every > 0)
    throw ConfigError("--eval-every evaluates a classifier: the contrastive objective is probed once, at the end");
  auto network = build_model(c, contrastive ? kEmbeddingDim : work.num_classes, &init_verified);
  std::optional<Trainer> holder;
  job_trainer(c, work, network, holder);
  Trainer& trainer = *holder;
  const RunPlan& plan = trainer.plan();
  std::ostringstream quiet;
  std::ostream& say = plan.lead() ? out : quiet;
  if (plan.lead() && !c.save_path.empty()) require_writable_parent(c.save_path);
  for (const std::string& w : trainer.warnings()) say << w << "\n";
  for (const std::string& n : c.foreign.notes) say << n << "\n";
  if (!c.foreign.ignored.empty()) {
    std::string keys;
    for (const std::string& k : c.foreign.ignored) keys += (keys.empty() ? "" : ", ") + k;
    say << fmt::format("note: {} keys that change nothing here were ignored: {}\n",
                       c.config_format == "hf" ? "Hugging Face" : "DeepSpeed", keys);
  }
  if (!init_verified)
    say << "note: " << c.init_path << " has no gradacc checksum; its weights were loaded unverified\n";
  if (c.model.kind == ModelKind::kGpt && c.model.fused_kernels && plan.device.is_cuda() && !fused_norm_kernels_built())
    say << "note: this build has no CUDA kernels of its own (no nvcc when it was configured): the gpt runs "
           "ATen's separate ops (docs/gpu.md)\n";
  say << fmt::format("gradacc train: model={} norm={} data={} ({} examples) {} steps={} optimizer={} lr={}{}{}\n",
                     to_string(c.model.kind), to_string(c.model.resolved_norm()), c.data, work.train->size(),
                     plan.micro_batch_tokens
                         ? fmt::format("global_batch={} micro_batching=tokens:{} world_size={}",
                                       plan.batch.global_batch, *plan.micro_batch_tokens, plan.batch.world_size)
                         : describe(plan.batch),
                     plan.total_steps, c.optimizer.name, c.optimizer.lr,
                     plan.schedule.lr_scaling == LrScaling::kNone
                         ? ""
                         : fmt::format(" lr_scaling={} base_batch={:g}", to_string(plan.schedule.lr_scaling),
                                       plan.schedule.base_batch),
                     precision_summary(plan));

  if (const auto& m = trainer.memory_plan()) {
    const std::string batches =
        m->micro_batch_tokens > 0
            ? fmt::format("micro_batching=tokens:{} (at most {} micro-batches)", m->micro_batch_tokens,
                          m->accumulation_steps)
            : fmt::format("micro_batch={} accumulation_steps={}", m->micro_batch, m->accumulation_steps);
    say << fmt::format("memory plan: budget {}, {} activation_checkpointing={}, predicted peak {} (static {})\n",
                       format_bytes(m->budget_bytes), batches, m->checkpointing ? "blocks" : "off",
                       format_bytes(m->predicted_peak), format_bytes(m->static_bytes));
    if (!m->zero_choice.empty()) say << m->zero_choice << "\n";
  }

  if (c.eval_every < 0) throw ConfigError(fmt::format("eval_every must be ≥ 0, got {}", c.eval_every));
  if (c.eval_every > 0 && (plan.lead() || plan.distributed.zero == 3)) {
    // Held-out loss (and accuracy, for classes) during training: how far the run has come per
    // optimizer step and per example seen. Rank 0 only (under ZeRO-3 every rank: the units'
    // gathers are collectives; rank 0 writes); eval mode and no gradients, so neither the
    // training RNG nor the accumulation is touched.
    trainer.on_step([&](const StepReport& r, const StepContext&) {
      if (r.step % c.eval_every != 0 || work.test->size() == 0) return true;
      if (work.text) {
        log_eval(trainer,
                 {{"split", "validation"}, {"at_step", r.step}, {"loss", trainer.evaluate_loss(*work.test, 64)}});
      } else {
        const Evaluation e = trainer.evaluate_loss_and_accuracy(*work.test, 250);  // one pass for both
        log_eval(trainer, {{"split", "test"}, {"at_step", r.step}, {"loss", e.loss}, {"accuracy", e.accuracy}});
      }
      return true;
    });
  }

  // The options as resolved, in TensorBoard's text tab (the Trainer adds the run it planned).
  if (!plan.logging.tensorboard_dir().empty()) {
    trainer.on_step([&, written = false](const StepReport&, const StepContext&) mutable {
      if (!written) trainer.log_text("options", option_values_markdown(c));
      written = true;
      return true;
    });
  }

  // --profile: steps 3–5, after the first windows have allocated what the run keeps; a run that
  // ends (or stops) before step 5 saves what it profiled.
  namespace prof = torch::autograd::profiler;
  bool profiling = false;
  int64_t profiled_to = 0;
  const auto save_profile = [&] {
    prof::disableProfiler()->save(c.profile_path);
    profiling = false;
    say << fmt::format("profile of steps 3-{} written to {}\n", profiled_to, c.profile_path);
  };
  if (!c.profile_path.empty() && plan.lead()) {  // rank 0 profiles; the ranks run the same step
    require_writable_parent(c.profile_path);
    trainer.on_step([&](const StepReport& r, const StepContext&) {
      profiled_to = r.step;
      if (r.step == 2) {
        // Kineto logs a CUDA probe's failure as an error on machines without a GPU: only fatal
        // messages, unless the user set a level.
        ::setenv("KINETO_LOG_LEVEL", "5", /*overwrite=*/0);
        // On a GPU the kernels too (CUPTI, through the CUDA build's Kineto): their names and
        // device times are what bench/trace_compare.py sets beside the seed loop's.
        std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
        if (plan.device.is_cuda()) activities.insert(prof::ActivityType::CUDA);
        const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
        prof::prepareProfiler(config, activities);
        prof::enableProfiler(config, activities);
        profiling = true;
      } else if (r.step == 5 && profiling) {
        save_profile();
      }
      return true;
    });
  }

  JobSummary s;
  s.result = trainer.fit();
  if (profiling) save_profile();
  if (!c.profile_path.empty() && s.result.steps - s.result.first_step < 3)
    say << "note: --profile profiles steps 3-5; this run was too short to profile\n";
  const TrainResult& r = s.result;
  for (const StepReport& step : r.history) s.peak_bytes = std::max(s.peak_bytes, step.peak_bytes);
  if (!r.history.empty()) {
    const int64_t replays = std::accumulate(r.history.begin(), r.history.end(), int64_t{0},
                                            [](int64_t n, const StepReport& x) { return n + x.oom_replays; });
    say << fmt::format(
        "peak tensor memory {}{}; optimizer state {} on this rank; gradient buffers {}; parameters {}{}{}\n",
        format_bytes(s.peak_bytes),
        plan.memory.budget() ? fmt::format(" of the {} budget", format_bytes(*plan.memory.budget())) : "",
        format_bytes(trainer.optimizer_state_bytes()), format_bytes(trainer.gradient_bytes()),
        format_bytes(trainer.parameter_bytes()),
        plan.distributed.zero
            ? fmt::format(" (ZeRO-{}: shard {} of {})", plan.distributed.zero, plan.env.rank, plan.env.world_size)
            : "",
        replays > 0 ? fmt::format("; {} window(s) ran out of memory and were replayed with micro_batch {}", replays,
                                  r.history.back().micro_batch)
                    : "");
  }
  if (!r.resumed_from.empty()) {
    say << fmt::format("resumed from {} at step {}{}\n", r.resumed_from, r.first_step,
                       r.lr_scale_note.empty() ? "" : " (the learning rate's factor changed there)");
  }
  const std::string skipped = trainer.loss_scaler()
                                  ? fmt::format("; {} step(s) skipped on fp16 overflow, final loss scale {}",
                                                trainer.loss_scaler()->skipped_steps(), trainer.loss_scaler()->scale())
                                  : "";
  if (r.stopped_early) {
    const std::string why = r.interrupted_by == 0      ? "stopped as asked (--stop-at)"
                            : r.signal_here == SIGINT  ? "interrupted (SIGINT)"
                            : r.signal_here == SIGTERM ? "interrupted (SIGTERM)"
                                                       : "stopped because another rank was interrupted";
    say << fmt::format("{} after step {} of {}; checkpoint {}; continue with --resume {}\n", why, r.steps,
                       plan.total_steps, r.checkpoint.empty() ? "(none)" : r.checkpoint, plan.checkpoint.dir);
    return s;
  }
  if (!plan.lead()) return s;  // rank 0 evaluates, saves and reports
  if (!c.save_path.empty()) save_module(c.save_path, *network, model_metadata(c.model));
  s.evaluated = true;
  // A resumed run that was already complete ran no window: say so rather than print a loss of 0.
  const std::string trained =
      fmt::format("trained {} optimizer steps in {:.2f} s; {}", r.steps, r.seconds,
                  r.history.empty() ? std::string("no window left to run")
                                    : fmt::format("last window loss {:.4f}", r.history.back().loss));
  if (work.text && work.test->size() == 0) {  // one to nine documents: nothing was held out
    out << fmt::format(
        "{}; no validation: every 10th document (blank-line separated) is held out, and this text has fewer than "
        "10{}\n",
        trained, skipped);
    return s;
  }
  if (work.text) {
    s.validation_loss = trainer.evaluate_loss(*work.test, 64);
    s.bits_per_byte = s.validation_loss / std::log(2.0);
    s.unigram_bits_per_byte = work.unigram_bits_per_byte;
    log_eval(trainer, {{"split", "validation"},
                       {"loss", s.validation_loss},
                       {"bits_per_byte", s.bits_per_byte},
                       {"unigram_bits_per_byte", s.unigram_bits_per_byte},
                       {"sequences", work.test->size()}});
    out << fmt::format("{}; validation {:.4f} bits/byte (unigram baseline {:.4f}){}\n", trained, s.bits_per_byte,
                       s.unigram_bits_per_byte, skipped);
    return s;
  }
  if (contrastive) {
    const auto& images = static_cast<const TensorDataset&>(*work.train);
    s.test_accuracy =
        linear_probe_accuracy(*network, images, static_cast<const TensorDataset&>(*work.test), plan.device);
    log_eval(trainer, {{"split", "test"}, {"linear_probe_accuracy", s.test_accuracy}, {"examples", work.test->size()}});
    out << fmt::format("{}; linear-probe test accuracy {:.4f}{}\n", trained, s.test_accuracy, skipped);
    return s;
  }
  const Evaluation test = trainer.evaluate_loss_and_accuracy(*work.test, 1000);  // one pass for both
  s.test_accuracy = test.accuracy;
  log_eval(trainer,
           {{"split", "test"}, {"loss", test.loss}, {"accuracy", s.test_accuracy}, {"examples", work.test->size()}});
  out << fmt::format("{}; test accuracy {:.4f}{}\n", trained, s.test_accuracy, skipped);
  return s;
}

MemoryPlan run_plan_fit_job(const JobConfig& c) {
  if (!c.train.memory().budget()) throw ConfigError("plan --fit needs --memory-budget SIZE (and --global-batch N)");
  const Workload work = load_workload(c);
  auto network = build_model(c, c.objective == "contrastive" ? kEmbeddingDim : work.num_classes);
  std::optional<Trainer> trainer;
  job_trainer(c, work, network, trainer);
  return *trainer->memory_plan();
}

VerifyResult run_verify_job(const JobConfig& c, VerifyOptions options) {
  const Workload work = load_workload(c);
  if (c.objective == "contrastive") {  // gradient caching against one forward and backward per window
    if (work.text) throw ConfigError("the contrastive objective embeds images: use Fashion-MNIST data, not text");
    build_model(c, kEmbeddingDim);
    options.compare_naive = true;  // each micro-batch's InfoNCE over its own negatives, beside it
    const auto make = [&] {
      auto network = make_seeded_model(c, kEmbeddingDim);
      return WindowModel{Model::of(network), contrastive_loss(network, c.temperature)};
    };
    const auto images = std::static_pointer_cast<const TensorDataset>(work.train);
    return verify_window_loss(make, optimizer_factory(c.optimizer),
                              std::make_shared<TwoViews>(images, static_cast<uint64_t>(c.train.data().seed())),
                              job_train_options(c), options);
  }
  build_model(c, work.num_classes);  // the model spec is checked once, up front
  options.compare_naive = work.text && !c.train.batch().micro_batch_tokens();  // naive needs a fixed micro-batch count
  const auto make = [&] { return Model::of(make_seeded_model(c, work.num_classes)); };
  return verify_accumulation(make, optimizer_factory(c.optimizer), work.train, job_train_options(c),
                             cross_entropy_loss(c.label_smoothing), options);
}

}  // namespace gradacc
