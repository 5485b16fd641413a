// IDX reader (the MNIST / Fashion-MNIST file format), gzip-compressed or plain.
//
// An IDX file is: two zero bytes, a type byte (0x08 = unsigned byte), a dimension count, one
// big-endian uint32 per dimension, then the values in row-major order. `read_idx_u8` checks every
// part of that and throws DataError (one line naming the file and the defect) on a missing,
// truncated, oversized or malformed file. It never returns a partially filled tensor.
//
// Thread safety: reentrant; touches only the named file.
#pragma once

#include <stdexcept>
#include <string>

#include <ATen/core/Tensor.h>

#include "gradacc/errors.h"

namespace gradacc {

// Reads a uint8 IDX file with exactly `expected_dims` dimensions; returns a kUInt8 tensor of the
// stored shape. Gzip is detected from the content, not the name.
at::Tensor read_idx_u8(const std::string& path, int expected_dims);

}  // namespace gradacc
