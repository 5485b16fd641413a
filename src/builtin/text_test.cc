#include "builtin/text.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <gtest/gtest.h>

#include "builtin/idx.h"

namespace gradacc {
namespace {

std::string write_text(const std::string& name, const std::string& text) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("gradacc_text_" + std::to_string(::getpid()) + "_" + name)).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(Text, SplitsDocumentsAtBlankLinesAndPredictsEveryByteOnce) {
  // Three documents of 13, 31 and 5 bytes (each keeps its final newline).
  const std::string text = "first doc.\nx\n\n\nsecond document, a longer one.\n\nend.\n";
  const std::string path = write_text("docs.txt", text);
  const TextSplits s = load_text(path, 8, /*validation_every=*/0);
  EXPECT_EQ(s.documents, 3);
  // Each document of n bytes yields n − 1 predictions, in ⌈(n − 1) / 8⌉ sequences.
  EXPECT_EQ(s.train->total_items(), (13 - 1) + (31 - 1) + (5 - 1));
  EXPECT_EQ(s.train->size(), 2 + 4 + 1);
  std::vector<int64_t> all(s.train->size());
  std::iota(all.begin(), all.end(), 0);
  const Batch b = s.train->gather(all);
  EXPECT_EQ(b.items, s.train->total_items());
  EXPECT_EQ(b.inputs.size(1), 8);
  EXPECT_EQ(b.targets.ne(kIgnoreIndex).sum().item<int64_t>(), b.items);
  // Row 0: "first do" → "irst doc"; targets are the inputs shifted by one byte.
  EXPECT_EQ(b.inputs[0][0].item<int64_t>(), 'f');
  EXPECT_EQ(b.targets[0][0].item<int64_t>(), 'i');
  EXPECT_EQ(b.targets[0][7].item<int64_t>(), 'c');
  // Row 1 continues where row 0 stopped predicting and is short: "c.\nx\n" → 4 predictions + padding.
  EXPECT_EQ(b.inputs[1][0].item<int64_t>(), 'c');
  EXPECT_EQ(b.targets[1].ne(kIgnoreIndex).sum().item<int64_t>(), 4);
  EXPECT_EQ(b.targets[1][4].item<int64_t>(), kIgnoreIndex);
  EXPECT_EQ(b.inputs[1][4].item<int64_t>(), 0);
  std::filesystem::remove(path);
}

TEST(Text, HoldsOutEveryTenthDocumentForValidation) {
  std::string text;
  for (int d = 0; d < 30; ++d) text += "document number " + std::to_string(d) + "\n\n";
  const std::string path = write_text("many.txt", text);
  const TextSplits s = load_text(path, 64);
  EXPECT_EQ(s.documents, 30);
  EXPECT_EQ(s.validation->size(), 3);
  EXPECT_EQ(s.train->size(), 27);
  // The unigram baseline is finite and below 8 bits (uniform over bytes).
  const double bpb = unigram_bits_per_byte(*s.train, *s.validation);
  EXPECT_GT(bpb, 1.0);
  EXPECT_LT(bpb, 8.0);
  std::filesystem::remove(path);
}

TEST(Text, AcceptsUtf8AndRejectsEverythingElse) {
  const std::string ok = write_text("utf8.txt", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 ok\n");
  EXPECT_NO_THROW(load_text(ok, 16));
  auto expect_error = [](const std::string& path, const std::string& fragment) {
    try {
      load_text(path, 16);
      FAIL() << "accepted " << path;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(write_text("latin1.txt", "caf\xe9 au lait\n"), "invalid byte 0xe9 at offset 3");
  expect_error(write_text("cut.txt", "ab\xe2\x82"), "offset 2");
  expect_error(write_text("overlong.txt", "\xc0\xaf"), "offset 0");
  expect_error(write_text("surrogate.txt", "x\xed\xa0\x80"), "offset 1");
  expect_error(write_text("empty.txt", ""), "empty");
  expect_error(write_text("blank.txt", "\n\n\n"), "no document");
  expect_error("/nonexistent/file.txt", "no such file");
}

TEST(Text, ReadsARealTextFile) {
  const TextSplits s = load_text("/usr/share/common-licenses/GPL-3", 64);
  EXPECT_GT(s.documents, 100);
  EXPECT_GT(s.train->size(), 400);
  EXPECT_GT(s.validation->size(), 40);
}

}  // namespace
}  // namespace gradacc
