// The one definition of each error's destructor (errors.h): the key function that anchors its
// vtable and type information in the library instead of in every object that throws or catches it.
#include "gradacc/errors.h"

namespace gradacc {

ConfigError::~ConfigError() = default;
PlanError::~PlanError() = default;
DataError::~DataError() = default;
FormatError::~FormatError() = default;
CheckpointError::~CheckpointError() = default;
MemoryError::~MemoryError() = default;
DistributedError::~DistributedError() = default;
IoError::~IoError() = default;
NumericalError::~NumericalError() = default;

}  // namespace gradacc
