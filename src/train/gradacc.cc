// gradacc::version() (gradacc.h): the headers' version as the library was compiled with them.
#include "gradacc/gradacc.h"

namespace gradacc {

const char* version() noexcept { return GRADACC_VERSION; }

}  // namespace gradacc
