#include "builtin/idx.h"

#include <zlib.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>

#include <ATen/ops/empty.h>
#include <fmt/format.h>

#include "base/files.h"
#include "base/parse.h"

namespace gradacc {
namespace {

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly n bytes or reports how many arrived; gzread also reads plain (uncompressed) files.
int64_t read_bytes(gzFile f, void* dst, int64_t n) {
  int64_t got = 0;
  auto* out = static_cast<char*>(dst);
  while (got < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - got, 1 << 30));
    const int r = gzread(f, out + got, chunk);
    if (r < 0) return -1;
    if (r == 0) break;
    got += r;
  }
  return got;
}

// A gzip file ends with its member's trailer: CRC-32, then the uncompressed size mod 2^32
// (little-endian). zlib's gzread stops at the end of the member and ignores whatever follows, so
// bytes appended after it would pass unseen; the size in the file's last four bytes catches them.
bool gzip_ends_at_member(const std::string& path, int64_t uncompressed) {
  std::ifstream raw(path, std::ios::binary | std::ios::ate);
  if (!raw || raw.tellg() < 18) return false;
  raw.seekg(-4, std::ios::end);
  std::array<unsigned char, 4> b{};
  if (!raw.read(reinterpret_cast<char*>(b.data()), 4)) return false;
  const uint32_t isize = uint32_t{b[0]} | (uint32_t{b[1]} << 8) | (uint32_t{b[2]} << 16) | (uint32_t{b[3]} << 24);
  return isize == static_cast<uint32_t>(uncompressed);
}

}  // namespace

at::Tensor read_idx_u8(const std::string& path, int expected_dims) {
  if (const std::string problem = input_file_problem(path); !problem.empty()) {
    throw DataError(fmt::format("{}: {}{}", shown(path, 200), problem,
                                problem == "no such file" ? " (is the dataset-fashion-mnist package installed?)" : ""));
  }
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) throw DataError(fmt::format("{}: cannot open for reading", path));

  std::array<uint8_t, 4> magic{};
  if (read_bytes(f.get(), magic.data(), 4) != 4) throw DataError(fmt::format("{}: truncated IDX header", path));
  if (magic[0] != 0 || magic[1] != 0) {
    throw DataError(
        fmt::format("{}: not an IDX file (magic bytes {:02x} {:02x}, expected 00 00)", path, magic[0], magic[1]));
  }
  if (magic[2] != 0x08) {
    throw DataError(fmt::format("{}: IDX value type 0x{:02x} is not unsigned byte (0x08)", path, magic[2]));
  }
  if (magic[3] != expected_dims) {
    throw DataError(fmt::format("{}: IDX file has {} dimensions, expected {}", path, magic[3], expected_dims));
  }

  std::vector<int64_t> shape;
  int64_t count = 1;
  for (int d = 0; d < expected_dims; ++d) {
    std::array<uint8_t, 4> b{};
    if (read_bytes(f.get(), b.data(), 4) != 4) throw DataError(fmt::format("{}: truncated IDX header", path));
    const int64_t n = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | int64_t{b[3]};
    if (n == 0 || n > (int64_t{1} << 28)) {
      throw DataError(fmt::format("{}: IDX dimension {} has implausible size {}", path, d, n));
    }
    shape.push_back(n);
    count *= n;
    if (count > (int64_t{1} << 34))
      throw DataError(fmt::format("{}: IDX file claims {} values, too many", path, count));
  }

  at::Tensor values = at::empty(shape, at::kByte);
  const int64_t got = read_bytes(f.get(), values.data_ptr<uint8_t>(), count);
  if (got < 0) throw DataError(fmt::format("{}: corrupt gzip stream", path));
  if (got != count) {
    throw DataError(fmt::format("{}: truncated: header promises {} values, file holds {}", path, count, got));
  }
  char extra = 0;
  if (read_bytes(f.get(), &extra, 1) != 0) {
    throw DataError(fmt::format("{}: has data past the {} values its header declares", path, count));
  }
  if (gzdirect(f.get()) == 0 && !gzip_ends_at_member(path, 4 + 4 * int64_t{expected_dims} + count))
    throw DataError(fmt::format("{}: has bytes after its gzip stream (or is several gzip streams)", path));
  return values;
}

}  // namespace gradacc
