#include "checkpoint/optimizer_shards.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>

#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include "base/parse.h"
#include "checkpoint/checkpoint.h"
#include "gradacc/errors.h"

namespace gradacc {
namespace {

namespace fs = std::filesystem;

constexpr const char* kShardFormatKey = "gradacc_checkpoint_shard";
constexpr const char* kShardFormatVersion = "1";

bool is_scalar_field(const std::string& field) { return field == "step"; }

// "<i>.<field>" → (i, field); false for other names.
bool split_key(const std::string& name, size_t& index, std::string& field) {
  const auto dot = name.find('.');
  if (dot == std::string::npos || dot == 0) return false;
  for (size_t k = 0; k < dot; ++k) {
    if (name[k] < '0' || name[k] > '9') return false;
  }
  index = std::stoul(name.substr(0, dot));
  field = name.substr(dot + 1);
  return !field.empty();
}

}  // namespace

std::string shard_file_name(int64_t step, int64_t rank, int64_t world) {
  return fmt::format("ckpt-step-{:08d}.shard-{}-of-{}.safetensors", step, rank, world);
}

TensorMap flatten_optimizer_state(const TensorMap& per_param, const std::vector<int64_t>& numels) {
  if (per_param.count("archive"))
    throw ConfigError("the optimizer's state is an opaque archive, not elementwise: it cannot be resharded");
  std::map<std::string, std::vector<at::Tensor>> pieces;  // field → per-parameter tensors
  std::map<std::string, size_t> seen;
  TensorMap flat;
  for (const auto& [name, t] : per_param) {
    size_t i = 0;
    std::string field;
    if (!split_key(name, i, field) || i >= numels.size())
      throw ConfigError(fmt::format("optimizer state '{}' belongs to no parameter of {}", name, numels.size()));
    ++seen[field];
    if (is_scalar_field(field)) {
      if (t.numel() != 1) throw ConfigError(fmt::format("optimizer state '{}' is not a scalar", name));
      auto it = flat.find(field);
      if (it == flat.end()) {
        flat[field] = t.reshape({});
      } else if (it->second.to(at::kDouble).item<double>() != t.to(at::kDouble).item<double>()) {
        throw ConfigError(fmt::format("the parameters' '{}' differ: their state cannot be flattened", field));
      }
      continue;
    }
    if (t.numel() != numels[i])
      throw ConfigError(
          fmt::format("optimizer state '{}' has {} elements, its parameter {}", name, t.numel(), numels[i]));
    auto& list = pieces[field];
    if (list.empty()) list.resize(numels.size());
    list[i] = t.reshape({-1});
  }
  for (const auto& [field, n] : seen) {
    if (n != numels.size())
      throw ConfigError(fmt::format("only {} of {} parameters have optimizer state '{}'", n, numels.size(), field));
  }
  for (auto& [field, list] : pieces) flat[field] = at::cat(list);
  return flat;
}

TensorMap split_optimizer_state(const TensorMap& flat, const std::vector<at::Tensor>& params) {
  int64_t total = 0;
  for (const at::Tensor& p : params) total += p.numel();
  TensorMap out;
  for (const auto& [field, t] : flat) {
    if (!is_scalar_field(field) && t.numel() != total)
      throw ConfigError(
          fmt::format("optimizer state '{}' covers {} elements, the parameters {}", field, t.numel(), total));
    int64_t at = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string key = fmt::format("{}.{}", i, field);
      if (is_scalar_field(field)) {
        out[key] = t;
      } else {
        out[key] = t.narrow(0, at, params[i].numel()).view(params[i].sizes());
        at += params[i].numel();
      }
    }
  }
  return out;
}

at::Tensor slice_padded(const at::Tensor& flat, int64_t offset, int64_t length) {
  at::Tensor out = at::zeros({length}, flat.options());
  const int64_t have = std::max<int64_t>(0, std::min(length, flat.numel() - offset));
  if (have > 0) out.narrow(0, 0, have).copy_(flat.narrow(0, offset, have));
  return out;
}

TensorMap slice_optimizer_state(const TensorMap& flat, int64_t offset, int64_t length) {
  TensorMap out;
  for (const auto& [field, t] : flat) out["0." + field] = is_scalar_field(field) ? t : slice_padded(t, offset, length);
  return out;
}

at::Tensor slice_padded(const at::Tensor& flat, const ShardSlot& slot) {
  if (slot.ranges.empty()) return slice_padded(flat, slot.offset, slot.length);
  at::Tensor out = at::zeros({slot.length}, flat.options());
  for (const ShardSlot::Range& r : slot.ranges) {
    if (r.element < 0 || r.length < 0 || r.element + r.length > flat.numel() || r.shard_offset < 0 ||
        r.shard_offset + r.length > slot.length)
      throw ConfigError(
          fmt::format("shard piece [{}, +{}) lies outside the {} elements", r.element, r.length, flat.numel()));
    out.narrow(0, r.shard_offset, r.length).copy_(flat.narrow(0, r.element, r.length));
  }
  return out;
}

TensorMap slice_optimizer_state(const TensorMap& flat, const ShardSlot& slot) {
  TensorMap out;
  for (const auto& [field, t] : flat) out["0." + field] = is_scalar_field(field) ? t : slice_padded(t, slot);
  return out;
}

void save_shard(const std::string& dir, int64_t step, const ShardSlot& slot, const TensorMap& optim,
                const TensorMap& state, const StringMap& identity, const std::string& weights_crc) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  TensorMap tensors;
  for (const auto& [name, t] : optim) tensors["optim." + name] = t;
  for (const auto& [name, t] : state) tensors["state." + name] = t;
  StringMap meta = {{kShardFormatKey, kShardFormatVersion},       {"step", std::to_string(step)},
                    {"zero.rank", std::to_string(slot.rank)},     {"zero.shards", std::to_string(slot.world)},
                    {"zero.offset", std::to_string(slot.offset)}, {"zero.length", std::to_string(slot.length)},
                    {"zero.total", std::to_string(slot.total)},   {"zero.weights", weights_crc}};
  for (const auto& [k, v] : identity) meta["run." + k] = v;
  if (!slot.ranges.empty()) {
    std::string ranges;
    for (const ShardSlot::Range& r : slot.ranges)
      ranges += fmt::format("{}{}:{}:{}", ranges.empty() ? "" : ",", r.element, r.shard_offset, r.length);
    meta["zero.ranges"] = ranges;
  }
  try {
    save_safetensors((fs::path(dir) / shard_file_name(step, slot.rank, slot.world)).string(), tensors, meta);
  } catch (const FormatError& e) {
    throw CheckpointError(e.what());
  }
}

TensorMap read_shards(const std::string& main_path, const StringMap& main_meta) {
  const std::string shown_main = shown(main_path, 200);
  const int64_t world = metadata_count(main_meta, "zero.shards", main_path);
  const int64_t step = metadata_count(main_meta, "step", main_path);
  const std::string crc = main_meta.count("zero.weights") ? main_meta.at("zero.weights") : "";
  if (world < 1 || world > 1000000 || crc.empty())
    throw CheckpointError(fmt::format("{}: its ZeRO shard record is damaged", shown_main));
  TensorMap flat;
  int64_t total = -1;
  std::vector<char> covered;               // each element of the flat state: placed by some shard
  std::map<std::string, int64_t> holders;  // field → shards that hold it
  for (int64_t r = 0; r < world; ++r) {
    const std::string file = (fs::path(main_path).parent_path() / shard_file_name(step, r, world)).string();
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
      throw CheckpointError(fmt::format("{}: its ZeRO shard {} is missing ({} shards were saved)", shown_main,
                                        fs::path(file).filename().string(), world));
    StringMap meta;
    ReadInfo read;
    TensorMap tensors;
    try {
      tensors = load_safetensors(file, &meta, &read);
    } catch (const FormatError& e) {
      throw CheckpointError(e.what());
    }
    if (!read.verified || !meta.count(kShardFormatKey) || meta.at(kShardFormatKey) != kShardFormatVersion)
      throw CheckpointError(fmt::format("{}: not a gradacc checkpoint shard of format {} with a checksum",
                                        shown(file, 200), kShardFormatVersion));
    if (metadata_count(meta, "step", file) != step || metadata_count(meta, "zero.rank", file) != r ||
        metadata_count(meta, "zero.shards", file) != world || !meta.count("zero.weights") ||
        meta.at("zero.weights") != crc)
      throw CheckpointError(fmt::format("{}: shard of another checkpoint than {} (step, rank or weights differ)",
                                        shown(file, 200), fs::path(main_path).filename().string()));
    for (const auto& [k, v] : main_meta) {
      if (k.rfind("run.", 0) == 0 && (!meta.count(k) || meta.at(k) != v))
        throw CheckpointError(fmt::format("{}: shard of another run: its {} differs from {}'s", shown(file, 200),
                                          k.substr(4), fs::path(main_path).filename().string()));
    }
    const int64_t offset = metadata_count(meta, "zero.offset", file),
                  length = metadata_count(meta, "zero.length", file);
    const int64_t shard_total = metadata_count(meta, "zero.total", file);
    if ((total >= 0 && shard_total != total) || shard_total > (int64_t{1} << 40))
      throw CheckpointError(
          fmt::format("{}: its total of {} elements differs from the other shards'", shown(file, 200), shard_total));
    total = shard_total;
    if (covered.empty()) covered.assign(static_cast<size_t>(total), 0);
    // The shard's pieces: ZeRO-3's list, else its one slice (clipped to the real elements).
    std::vector<ShardSlot::Range> ranges;
    if (meta.count("zero.ranges")) {
      std::stringstream list(meta.at("zero.ranges"));
      std::string item;
      while (std::getline(list, item, ',')) {
        ShardSlot::Range piece;
        char c1 = 0, c2 = 0;
        std::istringstream one(item);
        if (!(one >> piece.element >> c1 >> piece.shard_offset >> c2 >> piece.length) || c1 != ':' || c2 != ':' ||
            !one.eof())
          throw CheckpointError(
              fmt::format("{}: its zero.ranges entry '{}' is damaged", shown(file, 200), shown(item)));
        ranges.push_back(piece);
      }
    } else if (offset < total) {
      ranges.push_back(ShardSlot::Range{offset, 0, std::min(length, total - offset)});
    }
    for (const ShardSlot::Range& piece : ranges) {
      if (piece.element < 0 || piece.length < 0 || piece.element + piece.length > total || piece.shard_offset < 0 ||
          piece.shard_offset + piece.length > length)
        throw CheckpointError(fmt::format("{}: its piece [{}, +{}) lies outside the {} elements", shown(file, 200),
                                          piece.element, piece.length, total));
      for (int64_t e = piece.element; e < piece.element + piece.length; ++e) {
        if (covered[e])
          throw CheckpointError(
              fmt::format("{}: its piece at element {} overlaps another shard's", shown(file, 200), e));
        covered[e] = 1;
      }
    }
    for (const auto& [name, t] : tensors) {
      std::string field;
      if (name.rfind("optim.0.", 0) == 0)
        field = name.substr(8);
      else if (name == "state.master_weights")
        field = "master_weights";
      else if (name == "state.params")  // ZeRO-3: this rank's parameters, in the model's dtype
        field = "params";
      else
        throw CheckpointError(fmt::format("{}: shard holds unexpected tensor '{}'", shown(file, 200), name));
      if (is_scalar_field(field)) {
        if (t.numel() != 1) throw CheckpointError(fmt::format("{}: '{}' is not a scalar", shown(file, 200), name));
        if (flat.count(field) && !at::equal(flat.at(field).reshape({}), t.reshape({})))
          throw CheckpointError(fmt::format("{}: its '{}' differs from the other shards'", shown(file, 200), field));
        flat[field] = t.reshape({});
        continue;
      }
      if (t.dim() != 1 || t.numel() != length)
        throw CheckpointError(
            fmt::format("{}: '{}' has {} elements, the shard {}", shown(file, 200), name, t.numel(), length));
      if (holders[field]++ != r)
        throw CheckpointError(fmt::format("{}: '{}' is missing from an earlier shard", shown(file, 200), name));
      if (!flat.count(field)) flat[field] = at::zeros({total}, t.options());
      for (const ShardSlot::Range& piece : ranges)
        flat.at(field).narrow(0, piece.element, piece.length).copy_(t.narrow(0, piece.shard_offset, piece.length));
    }
  }
  const int64_t placed = std::count(covered.begin(), covered.end(), char{1});
  if (placed < total)
    throw CheckpointError(fmt::format("{}: its shards cover {} of {} elements", shown_main, placed, total));
  for (const auto& [field, n] : holders) {
    if (n != world) throw CheckpointError(fmt::format("{}: only some shards hold '{}'", shown_main, field));
  }
  return flat;
}

void remove_shards(const std::string& dir, int64_t step) {
  const std::regex name(fmt::format(R"(ckpt-step-{:08d}\.shard-\d+-of-\d+\.safetensors)", step));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (std::regex_match(entry.path().filename().string(), name)) fs::remove(entry.path(), ec);
  }
}

}  // namespace gradacc
