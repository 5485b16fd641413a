// gradacc's public API in one include: every header cmake --install puts under include/gradacc/,
// and nothing else (docs/library.md). The entry points are gradacc::Trainer (trainer.h) and, for
// a stock LibTorch optimizer the user already built, gradacc::train_with_accumulation
// (train_with_accumulation.h).
//
//   errors.h            ConfigError, PlanError, DataError, FormatError, CheckpointError, MemoryError:
//                       the only exceptions gradacc throws (all std::exception)
//   dataset.h           Batch, Dataset (implement size() and gather()), TensorDataset
//   torch_dataset.h     LibTorch's torch::data datasets as a Dataset (item counts included)
//   batch_plan.h        BatchPlan: global = micro × accumulation × world, resolved
//   model.h             Model (any torch::nn::Module + how to run it), LossFn, LossReduction
//   window_loss.h       WindowLoss: a loss over the whole window (contrastive), by gradient caching
//   units.h             Units: a model's blocks, for checkpointing and ZeRO-3's gathers; checkpointed():
//                       recompute a block's activations in the backward
//   optimizer.h         OptimizerFactory (any LibTorch optimizer), gradacc's fused Adam/AdamW
//   lr_schedule.h       ScheduleKind, WarmupStart, the schedule's shape, LrScaling (rate follows batch)
//   precision.h         Precision (fp32, bf16, fp16), AutocastGuard
//   sync_mode.h         SyncMode: once per window, or every micro-batch
//   step_report.h       StepReport, StepContext, StepCallback, Evaluation
//   memory_plan.h       MemoryPlan: what the memory budget's planner measured and chose
//   safetensors.h       save_module / load_module (safetensors with a checksum)
//   device.h            devices, tensor memory readings, the CPU allocator hook
//   options.h           TrainOptions: batch, length, schedule, clipping, precision, checkpoints...
//   trainer.h           Trainer, TrainResult
//   verify.h            verify_accumulation(): accumulated vs full-batch training
//   train_with_accumulation.h  the seeds' function: module, data, optimizer, accumulation steps
//
// It also says which gradacc this is: GRADACC_VERSION, the version of these headers, and
// gradacc::version(), the version of the library linked. The two differ only when a program is
// built against one install and linked against another; compare them at start-up to refuse that.
#pragma once

#include "gradacc/batch_plan.h"
#include "gradacc/dataset.h"
#include "gradacc/device.h"
#include "gradacc/errors.h"
#include "gradacc/lr_schedule.h"
#include "gradacc/memory_plan.h"
#include "gradacc/model.h"
#include "gradacc/optimizer.h"
#include "gradacc/options.h"
#include "gradacc/precision.h"
#include "gradacc/safetensors.h"
#include "gradacc/step_report.h"
#include "gradacc/sync_mode.h"
#include "gradacc/torch_dataset.h"
#include "gradacc/train_with_accumulation.h"
#include "gradacc/trainer.h"
#include "gradacc/units.h"
#include "gradacc/verify.h"
#include "gradacc/window_loss.h"

#define GRADACC_VERSION "0.4.0"  // project(gradacc VERSION ...) in CMakeLists.txt; a test keeps them equal

namespace gradacc {

// The version of the library linked, as GRADACC_VERSION was when it was built. Thread-safe.
const char* version() noexcept;

}  // namespace gradacc
