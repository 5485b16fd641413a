#include "base/files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>
#include "gradacc/errors.h"

namespace gradacc {

std::string input_file_problem(const std::string& path) {
  if (path.empty()) return "no file named";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno == ENOENT ? "no such file" : std::strerror(errno);
  if (S_ISDIR(st.st_mode)) return "is a directory";
  if (!S_ISREG(st.st_mode)) return "is not a regular file (a FIFO, socket or device)";
  if (::access(path.c_str(), R_OK) != 0) return "cannot be read (permission denied)";
  return "";
}

void require_distinct_files(const std::vector<std::pair<std::string, std::string>>& paths) {
  namespace fs = std::filesystem;
  for (size_t i = 0; i < paths.size(); ++i) {
    for (size_t j = i + 1; j < paths.size(); ++j) {
      const auto& [a_name, a] = paths[i];
      const auto& [b_name, b] = paths[j];
      if (a.empty() || b.empty()) continue;
      std::error_code ec;
      bool same = fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
      if (!same) same = fs::weakly_canonical(fs::absolute(a, ec), ec) == fs::weakly_canonical(fs::absolute(b, ec), ec);
      if (same) throw ConfigError(fmt::format("{} and {} name the same file ({})", a_name, b_name, a));
    }
  }
}

}  // namespace gradacc
