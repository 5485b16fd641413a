#include "builtin/idx.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "builtin/fashion_mnist.h"

#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::temp_path;

std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, size_t values) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift : {24, 16, 8, 0}) s.push_back(static_cast<char>((d >> shift) & 0xff));
  }
  for (size_t i = 0; i < values; ++i) s.push_back(static_cast<char>(i % 251));
  return s;
}

std::string write_gz(const std::string& name, const std::string& bytes) {
  const std::string path = temp_path(name);
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  return path;
}

std::string write_plain(const std::string& name, const std::string& bytes) {
  const std::string path = temp_path(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

void expect_error(const std::string& path, int dims, const std::string& fragment) {
  try {
    read_idx_u8(path, dims);
    FAIL() << "expected DataError for " << path;
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Idx, ReadsGzipAndPlainFiles) {
  const auto bytes = idx_bytes(0x08, {3, 2, 5}, 30);
  for (const auto& path : {write_gz("ok.gz", bytes), write_plain("ok", bytes)}) {
    const at::Tensor t = read_idx_u8(path, 3);
    EXPECT_EQ(t.sizes(), (std::vector<int64_t>{3, 2, 5}));
    EXPECT_EQ(t[2][1][4].item<int>(), 29);
    std::filesystem::remove(path);
  }
}

TEST(Idx, RejectsCorruptInput) {
  expect_error(temp_path("missing.gz"), 1, "no such file");
  expect_error(write_gz("magic.gz", "\x01\x00\x08\x01" + std::string(8, '\0')), 1, "magic");
  expect_error(write_gz("type.gz", idx_bytes(0x0D, {4}, 4)), 1, "value type 0x0d");
  expect_error(write_gz("dims.gz", idx_bytes(0x08, {2, 2}, 4)), 1, "2 dimensions, expected 1");
  expect_error(write_gz("short.gz", idx_bytes(0x08, {100}, 60)), 1,
               "truncated: header promises 100 values, file holds 60");
  expect_error(write_gz("long.gz", idx_bytes(0x08, {10}, 12)), 1, "past the 10 values");
  expect_error(write_gz("header.gz", std::string("\0\0\x08\x03\0\0", 6)), 3, "truncated IDX header");
  expect_error(write_gz("zero.gz", idx_bytes(0x08, {0}, 0)), 1, "implausible size 0");
  std::string broken = idx_bytes(0x08, {4096}, 4096);
  const std::string gz_path = write_gz("broken.gz", broken);
  // Chop the compressed stream in the middle: a corrupt download.
  std::string compressed;
  {
    std::ifstream in(gz_path, std::ios::binary);
    compressed.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(gz_path, std::ios::binary | std::ios::trunc) << compressed.substr(0, compressed.size() / 2);
  try {
    read_idx_u8(gz_path, 1);
    FAIL() << "a truncated gzip stream was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(gz_path), std::string::npos);
  }
}

TEST(FashionMnist, LoadsTheDebianPackage) {
  const auto test = load_fashion_mnist(kFashionMnistDir, Split::kTest);
  EXPECT_EQ(test->size(), 10000);
  EXPECT_EQ(test->inputs().sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  // Normalized with the training set's statistics: the test split lands near mean 0, std 1.
  EXPECT_NEAR(test->inputs().mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(test->inputs().std().item<double>(), 1.0, 0.02);
  EXPECT_EQ(test->labels().bincount().min().item<int64_t>(), 1000);  // balanced classes
}

TEST(FashionMnist, MissingDirectoryNamesTheFile) {
  try {
    load_fashion_mnist("/nonexistent", Split::kTrain);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/train-images-idx3-ubyte.gz"), std::string::npos);
  }
}

}  // namespace
}  // namespace gradacc
