// The errors gradacc throws, and the only ones (each is a std::exception: catching that catches
// all). At the bottom of the include graph: any layer may throw or catch them without including
// the layer that defines the thing that went wrong.
//
// Every what() is one line that names what is wrong (the flag or key, the file, the numbers) and,
// where it helps, what was expected. The CLI prints it and exits 2. Each class's destructor is
// defined once, in the library (src/base/errors.cc), so its type information has one home and a
// throw in one shared object is caught by type in another.
#pragma once

#include <stdexcept>

namespace gradacc {

// A bad option: a value out of range, or options that do not fit together.
class ConfigError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
  ~ConfigError() override;
};

// A batch plan that cannot be resolved (global = micro × accumulation × world does not hold).
class PlanError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
  ~PlanError() override;
};

// Training data that is missing, malformed or inconsistent.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~DataError() override;
};

// A weights or tensor file that is not what it claims to be (safetensors checks, checksum).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~FormatError() override;
};

// A checkpoint that cannot continue this run (corrupt, another run's, missing).
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~CheckpointError() override;
};

// Training that ran out of memory and cannot go on: a micro-batch of 1 does not fit.
class MemoryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~MemoryError() override;
};

// Data-parallel ranks that cannot meet or go on: the rendezvous store cannot be reached, the
// group cannot be formed, a collective failed (a peer died or stalled past the timeout).
class DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~DistributedError() override;
};

// Training whose numbers stopped being finite: a window's loss or gradient norm is inf or NaN
// without a loss scaler to skip it (diverged, or inf/NaN in the data). The update is not applied.
class NumericalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~NumericalError() override;
};

// A file gradacc writes that cannot be written (the step log: a bad path, a full disk).
class IoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~IoError() override;
};

}  // namespace gradacc
