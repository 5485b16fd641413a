// checkpointed(): a custom autograd function whose backward runs its segment again.
#include "gradacc/units.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/Generator.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/custom_class.h>

#include "gradacc/device.h"

namespace gradacc {
namespace {

// The segment rides in the autograd context as a capsule, so it lives as long as the graph.
struct SegmentHolder : torch::CustomClassHolder {
  explicit SegmentHolder(Segment s) : segment(std::move(s)) {}
  Segment segment;
};

// Autocast as the forward had it, for the recompute; the previous state back on exit.
class AutocastAs {
 public:
  AutocastAs(at::DeviceType device, bool enabled, at::ScalarType dtype)
      : device_(device),
        previous_enabled_(at::autocast::is_autocast_enabled(device)),
        previous_dtype_(at::autocast::get_autocast_dtype(device)) {
    at::autocast::set_autocast_enabled(device_, enabled);
    at::autocast::set_autocast_dtype(device_, dtype);
    if (enabled) at::autocast::increment_nesting();
    enabled_ = enabled;
  }
  ~AutocastAs() {
    if (enabled_ && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, previous_enabled_);
    at::autocast::set_autocast_dtype(device_, previous_dtype_);
  }
  AutocastAs(const AutocastAs&) = delete;
  AutocastAs& operator=(const AutocastAs&) = delete;

 private:
  at::DeviceType device_;
  bool previous_enabled_;
  at::ScalarType previous_dtype_;
  bool enabled_ = false;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, at::TensorList params,
                            const c10::IValue& segment) {
    const at::DeviceType device = input.device().type();
    ctx->saved_data["segment"] = segment;
    ctx->saved_data["rng"] = generator_state(input.device());
    ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(device);
    ctx->saved_data["autocast_dtype"] = static_cast<int64_t>(at::autocast::get_autocast_dtype(device));
    // Sized once, then filled: GCC 13 (-Warray-bounds) misreads an insert into a vector that was
    // built from a one-element initializer list as a copy past that list's storage.
    std::vector<at::Tensor> saved;
    saved.reserve(params.size() + 1);
    saved.push_back(input);
    for (const at::Tensor& p : params) saved.push_back(p);
    ctx->save_for_backward(saved);
    // Autograd is off here: the segment's activations are freed as soon as it returns.
    return c10::static_intrusive_pointer_cast<SegmentHolder>(segment.toCapsule())->segment(input);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const std::vector<at::Tensor> saved = ctx->get_saved_variables();
    const at::Tensor x = saved[0].detach().requires_grad_(saved[0].requires_grad());
    const auto holder = c10::static_intrusive_pointer_cast<SegmentHolder>(ctx->saved_data["segment"].toCapsule());

    // The recompute draws the same random numbers as the forward did; the stream then goes on
    // from where the rest of the backward pass left it.
    const at::Tensor rng_now = generator_state(x.device());
    set_generator_state(x.device(), ctx->saved_data["rng"].toTensor());
    at::Tensor y;
    {
      AutocastAs autocast(x.device().type(), ctx->saved_data["autocast"].toBool(),
                          static_cast<at::ScalarType>(ctx->saved_data["autocast_dtype"].toInt()));
      torch::AutoGradMode grad_on(true);
      y = holder->segment(x);
    }
    set_generator_state(x.device(), rng_now);

    // Gradients of the segment's output to its input and its parameters (those that need them).
    std::vector<at::Tensor> wrt;
    std::vector<size_t> slot;  // position in the returned list
    if (x.requires_grad()) {
      wrt.push_back(x);
      slot.push_back(0);
    }
    for (size_t i = 1; i < saved.size(); ++i) {
      if (!saved[i].requires_grad()) continue;
      wrt.push_back(saved[i]);
      slot.push_back(i);
    }
    torch::autograd::variable_list out(saved.size() + 1);  // + the segment (no gradient)
    if (wrt.empty() || !y.requires_grad()) return out;
    const torch::autograd::variable_list grads =
        torch::autograd::grad({y}, wrt, {grad_outputs[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                              /*allow_unused=*/true);
    for (size_t k = 0; k < wrt.size(); ++k) out[slot[k]] = grads[k];
    return out;
  }
};

}  // namespace

at::Tensor checkpointed(const std::vector<at::Tensor>& params, Segment segment, const at::Tensor& input) {
  if (!torch::GradMode::is_enabled()) return segment(input);
  std::vector<at::Tensor> trainable;
  for (const at::Tensor& p : params) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  return CheckpointFunction::apply(input, at::TensorList(trainable),
                                   c10::IValue::make_capsule(c10::make_intrusive<SegmentHolder>(std::move(segment))));
}

}  // namespace gradacc
