#include "app/job_config.h"

#include "builtin/model_metadata.h"

namespace gradacc {

JobConfig default_job() {
  JobConfig c;
  c.model.kind = ModelKind::kCnn;  // norm unset: each model's default (cnn: group)
  c.optimizer.name = "adamw";
  c.optimizer.lr = 2e-3;
  c.optimizer.weight_decay = 0.01;
  c.train.schedule().kind(ScheduleKind::kCosine);
  c.train.batch().clip(1.0);
  return c;
}

TrainOptions job_train_options(const JobConfig& c) {
  TrainOptions o = c.train;
  if (!o.batch().global_batch() && !o.batch().micro_batch() && !o.batch().accumulation_steps() &&
      o.batch().micro_batch_tokens() && o.batch().accum_schedule().empty()) {
    o.batch().global_batch(c.default_global_batch);  // token budgets cut the windows: no micro-batch to default
  } else if (!o.batch().global_batch() && !o.batch().micro_batch() && !o.batch().accumulation_steps()) {
    o.batch().micro_batch(c.default_micro_batch);
    if (o.batch().accum_schedule().empty() && !o.batch().accum_auto()) o.batch().global_batch(c.default_global_batch);
  }
  if (!o.data().steps() && !o.data().epochs()) o.data().epochs(c.default_epochs);
  StringMap identity = o.identity();
  for (const auto& [k, v] : model_metadata(c.model)) {
    if (k != "format") identity["model." + k] = v;
  }
  o.identity(identity);
  return o;
}

}  // namespace gradacc
