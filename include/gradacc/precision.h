// Precision of the forward pass, and an RAII guard over LibTorch's autocast state.
//
//   fp32  no autocast.
//   bf16  autocast to bfloat16: matmuls and convolutions run in bf16, reductions and losses in fp32
//         (LibTorch's op lists). Same exponent range as fp32: no loss scaling needed.
//   fp16  autocast to float16: 5 exponent bits, so small gradients underflow; pair it with a
//         LossScaler (loss_scaler.h).
//
// AutocastGuard enables autocast for one device type with one dtype for its lifetime, nests
// (an inner guard restores the outer state), and clears the cast cache when the outermost guard
// ends (cached low-precision copies of the weights must not outlive an optimizer update).
// Thread safety: autocast state is thread-local; a guard affects only its own thread.
#pragma once

#include <string>

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace gradacc {

enum class Precision { kFp32, kBf16, kFp16 };

// "fp32" | "bf16" | "fp16"; throws ConfigError otherwise.
Precision parse_precision(const std::string& name);
std::string to_string(Precision precision);
at::ScalarType scalar_type(Precision precision);

class AutocastGuard {
 public:
  // kFp32: the guard does nothing (autocast stays as it was).
  AutocastGuard(at::DeviceType device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_;
  at::DeviceType device_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace gradacc
