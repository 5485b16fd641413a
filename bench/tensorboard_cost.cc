// The time RunLog::step takes per optimizer step: the JSONL line alone, and with the TensorBoard
// event file (bench/tensorboard.sh sets it beside the gpt's step time). A step report with every
// field the gpt's log has; blocks of steps alternate between the two logs so that both see the
// same machine.
//
//   gradacc_bench_tensorboard DIR [STEPS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "log/run_log.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: gradacc_bench_tensorboard DIR [STEPS]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int64_t steps = argc > 2 ? std::stoll(argv[2]) : 20000;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  gradacc::RunLog jsonl(dir + "/a.jsonl", "", std::nullopt);
  gradacc::RunLog both(dir + "/b.jsonl", dir + "/tb", std::nullopt);
  gradacc::StepReport r;
  r.loss = 2.5, r.lr = 1e-3, r.lr_scale = 1, r.grad_norm = 0.7, r.clip_coef = 1, r.samples = 64, r.items = 8192;
  r.micro_batches = 8, r.boundary_seconds = 0.01, r.loss_scale = 1, r.peak_bytes = 123456789, r.micro_batch = 8;
  r.computed_items = 8192;
  std::vector<double> us[2];
  constexpr int64_t kBlock = 500;
  for (int64_t start = 0; start < steps; start += kBlock) {
    for (int which = 0; which < 2; ++which) {
      gradacc::RunLog& log = which == 0 ? jsonl : both;
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t s = start; s < start + kBlock; ++s) {
        r.step = s + 1;
        r.loss = 2.5 / (1 + 1e-4 * s);
        log.step(r, 0, 0.4);
      }
      us[which].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
                          kBlock);
    }
  }
  both.close();
  for (auto& v : us) std::sort(v.begin(), v.end());
  std::printf("per step, median of %zu blocks of %lld: JSONL %.2f us, JSONL + TensorBoard %.2f us\n", us[0].size(),
              static_cast<long long>(kBlock), us[0][us[0].size() / 2], us[1][us[1].size() / 2]);
  std::filesystem::remove_all(dir);
  return 0;
}
