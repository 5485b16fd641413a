#include "builtin/text.h"

#include <numeric>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include "base/files.h"
#include "base/parse.h"
#include "batch/packing.h"
#include "builtin/idx.h"

namespace gradacc {
namespace {

// Offset of the first byte that breaks UTF-8 (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF),
// or -1 when the whole text is valid.
int64_t first_invalid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const int64_t n = static_cast<int64_t>(s.size());
  int64_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    int len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF)
      len = 1;
    else if (c == 0xE0) {
      len = 2;
      lo = 0xA0;
    } else if (c == 0xED) {
      len = 2;
      hi = 0x9F;
    } else if (c >= 0xE1 && c <= 0xEF)
      len = 2;
    else if (c == 0xF0) {
      len = 3;
      lo = 0x90;
    } else if (c == 0xF4) {
      len = 3;
      hi = 0x8F;
    } else if (c >= 0xF1 && c <= 0xF3)
      len = 3;
    else
      return i;
    for (int k = 1; k <= len; ++k) {
      if (i + k >= n) return i;
      const unsigned b = p[i + k];
      if (b < (k == 1 ? lo : 0x80u) || b > (k == 1 ? hi : 0xBFu)) return i;
    }
    i += len + 1;
  }
  return -1;
}

}  // namespace

TextDataset::TextDataset(std::shared_ptr<const std::string> bytes, std::vector<std::pair<int64_t, int64_t>> sequences)
    : bytes_(std::move(bytes)), sequences_(std::move(sequences)) {}

std::shared_ptr<TextDataset> TextDataset::packed(int64_t row_length) const {
  if (row_length < 1) throw std::invalid_argument(fmt::format("packed rows need ≥ 1 token, got {}", row_length));
  auto out = std::make_shared<TextDataset>(bytes_, sequences_);
  out->packed_row_length_ = row_length;
  out->lengths_ = lengths();  // once, not per gathered micro-batch
  return out;
}

Batch TextDataset::gather(const std::vector<int64_t>& indices) const {
  const auto* text = reinterpret_cast<const unsigned char*>(bytes_->data());
  if (packed_row_length_ > 0) {
    // Rows of whole sequences, first-fit decreasing; each sequence's positions start at 0.
    const std::vector<int64_t>& all = lengths_;
    const std::vector<std::vector<int64_t>> rows = pack_rows(indices, all, packed_row_length_).rows;
    int64_t width = 0, items = 0;
    for (const auto& row : rows) {
      int64_t fill = 0;
      for (int64_t i : row) fill += all[static_cast<size_t>(i)];
      width = std::max(width, fill);
      items += fill;
    }
    const auto R = static_cast<int64_t>(rows.size());
    Batch b{at::full({R, width}, 0, at::kLong), at::full({R, width}, kIgnoreIndex, at::kLong),
            static_cast<int64_t>(indices.size()), items};
    b.positions = at::zeros({R, width}, at::kLong);
    b.segments = at::zeros({R, width}, at::kLong);
    auto in = b.inputs.accessor<int64_t, 2>();
    auto out = b.targets.accessor<int64_t, 2>();
    auto pos = b.positions.accessor<int64_t, 2>();
    auto seg = b.segments.accessor<int64_t, 2>();
    for (int64_t r = 0; r < R; ++r) {
      int64_t col = 0, segment = 0;
      for (int64_t i : rows[static_cast<size_t>(r)]) {
        const auto [begin, end] = sequences_[i];
        ++segment;
        for (int64_t t = 0; t < end - begin - 1; ++t, ++col) {
          in[r][col] = text[begin + t];
          out[r][col] = text[begin + t + 1];
          pos[r][col] = t;
          seg[r][col] = segment;
        }
      }
    }
    return b;
  }
  int64_t longest = 0, items = 0;
  for (int64_t i : indices) {
    const auto [b, e] = sequences_.at(i);
    longest = std::max(longest, e - b - 1);
    items += e - b - 1;
  }
  const auto B = static_cast<int64_t>(indices.size());
  at::Tensor inputs = at::full({B, longest}, 0, at::kLong);
  at::Tensor targets = at::full({B, longest}, kIgnoreIndex, at::kLong);
  auto in = inputs.accessor<int64_t, 2>();
  auto out = targets.accessor<int64_t, 2>();
  for (int64_t r = 0; r < B; ++r) {
    const auto [b, e] = sequences_[indices[r]];
    for (int64_t t = 0; t < e - b - 1; ++t) {
      in[r][t] = text[b + t];
      out[r][t] = text[b + t + 1];
    }
  }
  return Batch{inputs, targets, B, items};
}

std::shared_ptr<TextDataset> TextDataset::head(int64_t n) const {
  const auto end = sequences_.begin() + std::min<int64_t>(n, size());
  return std::make_shared<TextDataset>(bytes_, std::vector<std::pair<int64_t, int64_t>>(sequences_.begin(), end));
}

std::vector<int64_t> TextDataset::largest_examples(int64_t n) const {
  std::vector<int64_t> order(sequences_.size());
  std::iota(order.begin(), order.end(), 0);
  const auto length = [this](int64_t i) { return sequences_[i].second - sequences_[i].first; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  order.resize(static_cast<size_t>(std::clamp<int64_t>(n, 0, size())));
  return order;
}

std::vector<int64_t> TextDataset::lengths() const {
  std::vector<int64_t> out;
  out.reserve(sequences_.size());
  for (const auto& [b, e] : sequences_) out.push_back(e - b - 1);
  return out;
}

int64_t TextDataset::total_items() const {
  int64_t n = 0;
  for (const auto& [b, e] : sequences_) n += e - b - 1;
  return n;
}

std::vector<int64_t> TextDataset::target_histogram() const {
  std::vector<int64_t> h(kByteVocab, 0);
  const auto* text = reinterpret_cast<const unsigned char*>(bytes_->data());
  for (const auto& [b, e] : sequences_) {
    for (int64_t i = b + 1; i < e; ++i) ++h[text[i]];
  }
  return h;
}

TextSplits load_text(const std::string& path, int64_t context, int64_t validation_every) {
  if (context < 1) throw DataError(fmt::format("context must be ≥ 1, got {}", context));
  if (const std::string problem = input_file_problem(path); !problem.empty()) {
    throw DataError(fmt::format("{}: {}", shown(path, 200), problem));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("{}: cannot open text file", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  auto bytes = std::make_shared<std::string>(ss.str());
  if (bytes->empty()) throw DataError(fmt::format("{}: the text file is empty", path));
  if (const int64_t bad = first_invalid_utf8(*bytes); bad >= 0) {
    throw DataError(fmt::format("{}: not UTF-8 text (invalid byte 0x{:02x} at offset {})", path,
                                static_cast<unsigned char>((*bytes)[bad]), bad));
  }

  // Documents: maximal runs of text between blank lines ("\n\n", optionally with more newlines).
  std::vector<std::pair<int64_t, int64_t>> docs;
  const std::string& s = *bytes;
  int64_t start = 0;
  const auto n = static_cast<int64_t>(s.size());
  while (start < n) {
    while (start < n && s[start] == '\n') ++start;
    if (start >= n) break;
    size_t cut = s.find("\n\n", static_cast<size_t>(start));
    const int64_t end = cut == std::string::npos ? n : static_cast<int64_t>(cut) + 1;  // keep one '\n'
    docs.emplace_back(start, end);
    start = end;
  }

  TextSplits splits;
  splits.documents = static_cast<int64_t>(docs.size());
  std::vector<std::pair<int64_t, int64_t>> train, validation;
  for (size_t d = 0; d < docs.size(); ++d) {
    auto& dst = (validation_every > 0 && (d + 1) % validation_every == 0) ? validation : train;
    const auto [b, e] = docs[d];
    for (int64_t k = b; k + 1 < e; k += context) dst.emplace_back(k, std::min(k + context + 1, e));
  }
  if (train.empty()) throw DataError(fmt::format("{}: no document has two or more bytes to learn from", path));
  splits.train = std::make_shared<TextDataset>(bytes, std::move(train));
  splits.validation = std::make_shared<TextDataset>(bytes, std::move(validation));
  return splits;
}

double unigram_bits_per_byte(const TextDataset& train, const TextDataset& eval) {
  const auto h = train.target_histogram(), e = eval.target_histogram();
  double total = 0, bits = 0, count = 0;
  for (int64_t c : h) total += static_cast<double>(c) + 1.0;  // add-one smoothing: unseen bytes stay finite
  for (int64_t v = 0; v < kByteVocab; ++v) {
    if (e[v] == 0) continue;
    bits += static_cast<double>(e[v]) * -std::log2((static_cast<double>(h[v]) + 1.0) / total);
    count += static_cast<double>(e[v]);
  }
  return count > 0 ? bits / count : 0.0;
}

}  // namespace gradacc
