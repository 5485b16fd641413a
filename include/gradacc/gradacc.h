// gradacc's public API in one include. The library's entry point is gradacc::Trainer
// (run/trainer.h); docs/library.md shows it with examples/custom_model.
//
//   errors.h            ConfigError, PlanError, DataError, FormatError, CheckpointError, MemoryError
//   run/options.h       TrainOptions: batch, length, schedule, clipping, precision, checkpoints...
//   run/model.h         Model (any torch::nn::Module + how to run it), LossFn, summed_cross_entropy
//   data/dataset.h      Batch, Dataset (implement size() and gather()), TensorDataset
//   data/torch_dataset.h  LibTorch's torch::data datasets as a Dataset (item counts included)
//   optim/optimizer.h   OptimizerFactory (any LibTorch optimizer), gradacc's fused AdamW
//   run/trainer.h       Trainer, TrainResult
//   run/verify.h        verify_accumulation(): accumulated vs full-batch training
//   run/run_plan.h      RunPlan: the options resolved (what the Trainer runs)
//   accumulate/...      the Accumulator and its parts, for those who write their own loop
//   memory/...          the memory budget's planner, activation checkpointing (checkpointed())
//   device/device.h     devices, memory readings
//   io/safetensors.h    save_module / load_module (safetensors with a checksum)
#pragma once

#include "gradacc/accumulate/accumulator.h"
#include "gradacc/accumulate/batch_plan.h"
#include "gradacc/accumulate/step_report.h"
#include "gradacc/data/dataset.h"
#include "gradacc/data/torch_dataset.h"
#include "gradacc/device/device.h"
#include "gradacc/errors.h"
#include "gradacc/io/safetensors.h"
#include "gradacc/memory/activation_checkpoint.h"
#include "gradacc/memory/memory_plan.h"
#include "gradacc/optim/optimizer.h"
#include "gradacc/run/model.h"
#include "gradacc/run/options.h"
#include "gradacc/run/run_plan.h"
#include "gradacc/run/trainer.h"
#include "gradacc/run/verify.h"
