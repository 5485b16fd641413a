// What a Trainer answers besides fit(): step callbacks, held-out evaluation, the resolved run, its parts, and the
// bytes a rank keeps.
#include "gradacc/trainer.h"
#include "train/evaluation.h"
#include "train/trainer_state.h"

namespace gradacc {

Trainer& Trainer::on_step(StepCallback callback) {
  s_->callbacks.push_back(std::move(callback));
  return *this;
}

// Evaluation under ZeRO-3 during training (a step callback): the root unit whole for the pass,
// each declared unit gathered around its forward. A collective: every rank evaluates.
double Trainer::evaluate_loss(const Dataset& data, int64_t batch) {
  const GatheredMicroBatch gathers(s_->gather.get(), /*counted=*/false);
  return gradacc::evaluate_loss(s_->model, s_->loss, data, s_->plan().device, batch, s_->plan().precision.compute);
}

Evaluation Trainer::evaluate_loss_and_accuracy(const Dataset& data, int64_t batch) {
  const GatheredMicroBatch gathers(s_->gather.get(), /*counted=*/false);
  return gradacc::evaluate_loss_and_accuracy(s_->model, s_->loss, data, s_->plan().device, batch,
                                             s_->plan().precision.compute);
}

double Trainer::evaluate_accuracy(const Dataset& data, int64_t batch) {
  const GatheredMicroBatch gathers(s_->gather.get(), /*counted=*/false);
  return gradacc::evaluate_accuracy(s_->model, data, s_->plan().device, batch, s_->plan().precision.compute);
}

const RunPlan& Trainer::plan() const { return s_->plan(); }
int Trainer::rank() const { return static_cast<int>(s_->plan().env.rank); }
int Trainer::world_size() const { return static_cast<int>(s_->plan().env.world_size); }
const BatchPlan& Trainer::batch_plan() const { return s_->plan().batch; }
const std::optional<MemoryPlan>& Trainer::memory_plan() const { return s_->memory_plan; }
Model& Trainer::model() { return s_->model; }
torch::optim::Optimizer& Trainer::optimizer() { return *s_->optimizer; }
Accumulator& Trainer::accumulator() { return *s_->accumulator; }
const LossScaler* Trainer::loss_scaler() const { return s_->scaler.get(); }
const std::vector<std::string>& Trainer::warnings() const { return s_->warnings; }

int64_t Trainer::optimizer_state_bytes() const {
  int64_t bytes = 0;
  for (const auto& [name, t] : optimizer_state(*s_->optimizer)) bytes += static_cast<int64_t>(t.nbytes());
  if (s_->checkpointer)
    for (const auto& [name, t] : s_->checkpointer->part_tensors()) bytes += static_cast<int64_t>(t.nbytes());
  return bytes;
}

int64_t Trainer::gradient_bytes() const { return s_->accumulator->gradient_bytes(); }

int64_t Trainer::parameter_bytes() const {
  if (s_->zero) return s_->zero->resident_parameter_bytes();
  int64_t bytes = 0;
  for (const at::Tensor& t : s_->model.module->parameters()) bytes += static_cast<int64_t>(t.nbytes());
  return bytes;
}

}  // namespace gradacc
