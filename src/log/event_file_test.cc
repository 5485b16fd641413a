// The event file's framing and flushing: CRC-32C against its published check value, records laid
// out as TFRecord lays them out, the flusher writing to disk without a further record, and one
// error line for a directory that cannot be made. (TensorBoard's own reader is run against whole
// runs by tests/tensorboard.sh.)
#include "log/event_file.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <gtest/gtest.h>

#include "gradacc/errors.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

namespace fs = std::filesystem;

uint32_t unmask(uint32_t masked) {
  const uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

TEST(EventFile, Crc32cIsCastagnolis) {
  EXPECT_EQ(unmask(masked_crc32c("123456789")), 0xE3069283u);  // CRC-32C's check value (RFC 3720)
  EXPECT_EQ(unmask(masked_crc32c("")), 0u);
}

TEST(EventFile, RecordsAreFramedAndFlushedWithinTheInterval) {
  const std::string dir = testing::temp_path("event_file_dir");
  fs::remove_all(dir);
  EventFile file(dir, std::chrono::milliseconds(50));
  EXPECT_TRUE(fs::path(file.path()).filename().string().starts_with("events.out.tfevents."));
  file.append("hello");
  file.append(std::string(300, 'x'));
  // No flush() called: the flusher writes it out on its own.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (fs::file_size(file.path()) < 2 * 16 + 5 + 300 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const std::string bytes = read_all(file.path());
  ASSERT_EQ(bytes.size(), 2u * 16 + 5 + 300);
  EXPECT_EQ(le(bytes, 0, 8), 5u);
  EXPECT_EQ(le(bytes, 8, 4), masked_crc32c(bytes.substr(0, 8)));
  EXPECT_EQ(bytes.substr(12, 5), "hello");
  EXPECT_EQ(le(bytes, 17, 4), masked_crc32c("hello"));
  EXPECT_EQ(le(bytes, 21, 8), 300u);
  file.close();

  // A second file in the same directory sorts after the first (a resume's continues it).
  EventFile next(dir);
  EXPECT_GT(fs::path(next.path()).filename().string(), fs::path(file.path()).filename().string());
  next.close();
  fs::remove_all(dir);
}

TEST(EventFile, UnwritableDirectoryIsOneLine) {
  const std::string blocker = testing::temp_path("event_file_blocker");
  std::ofstream(blocker) << "a file";
  try {
    EventFile file(blocker + "/tb");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write TensorBoard directory"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  fs::remove(blocker);
}

}  // namespace
}  // namespace gradacc
