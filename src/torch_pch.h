// Precompiled header: the LibTorch headers most translation units include (they cost ~15 s each).
#pragma once
#include <ATen/core/Tensor.h>
#include <fmt/format.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
