#include "gradacc/units.h"

#include <stdexcept>

#include "gradacc/errors.h"

namespace gradacc {

size_t Units::add(std::shared_ptr<torch::nn::Module> module) {
  std::vector<std::shared_ptr<torch::nn::Module>> one;
  one.push_back(std::move(module));
  return add(std::move(one));
}

size_t Units::add(std::vector<std::shared_ptr<torch::nn::Module>> modules) {
  if (modules.empty()) throw ConfigError("Units::add: a unit of no module");
  for (const auto& m : modules) {
    if (!m) throw ConfigError("Units::add: a null module");
  }
  modules_.push_back(std::move(modules));
  return modules_.size() - 1;
}

std::vector<at::Tensor> Units::parameters(size_t index) const {
  std::vector<at::Tensor> out;
  for (const auto& m : modules_.at(index)) {
    for (const at::Tensor& p : m->parameters()) out.push_back(p);
  }
  return out;
}

bool Units::set_checkpointing(bool on) {
  if (on && modules_.empty()) return false;
  checkpointing_ = on;
  return true;
}

at::Tensor Units::run(size_t index, const Segment& segment, const at::Tensor& input) {
  if (index >= modules_.size())
    throw ConfigError("Units::run: unit " + std::to_string(index) + " was not declared (add() it first)");
  if (observer_) observer_->before_forward(index);
  at::Tensor output = checkpointing_ ? checkpointed(parameters(index), segment, input) : segment(input);
  if (!observer_) return output;
  const bool backward_follows = output.requires_grad();
  observer_->after_forward(index, backward_follows);
  if (backward_follows) {
    // The gradient reaching the unit's output: its parameters are needed again. The observer
    // outlives the graph only while training; the hook reads it through this Units.
    output.register_hook([this, index](const at::Tensor&) {
      if (observer_) observer_->before_backward(index);
    });
  }
  return output;
}

}  // namespace gradacc
