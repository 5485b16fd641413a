// Checks on the files gradacc reads and writes, so that a bad path ends in one clear line instead
// of a hang (a FIFO blocks in open()) or a clobbered file.
#pragma once

#include <string>
#include <vector>

namespace gradacc {

// "" when `path` is a regular file that can be opened for reading; otherwise what is wrong with
// it ("no such file", "is a directory", "is not a regular file (a FIFO, socket or device)", ...).
std::string input_file_problem(const std::string& path);

// Throws ConfigError naming the two options when two of `paths` (name, path; empty paths
// ignored) are the same file: existing files by identity (hard links and symlinks included),
// others by their absolute, normalized path.
void require_distinct_files(const std::vector<std::pair<std::string, std::string>>& paths);

}  // namespace gradacc
