#include "sync/compressed_reducer.h"

#include <cmath>

#include <ATen/ops/empty.h>
#include <ATen/ops/exp2.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>

#include "gradacc/errors.h"

namespace gradacc {
namespace {

constexpr double kTop = 16384.0;  // 2^14: a chunk's largest magnitude after scaling lies in (2^13, 2^14]
constexpr double kMaxExponent = 120;

// `values` [rows, n] fp32 → [rows, n + 1] in `wire`: each row scaled by 2^k (k = ⌊log2(2^14 / max|row|)⌋,
// within ±120, so 2^k and k itself are exact in fp32 and in 16 bits), then k in the last column.
at::Tensor encode(const at::Tensor& values, at::ScalarType wire) {
  const at::Tensor k = (std::log2(kTop) - values.abs().amax(1, /*keepdim=*/true).log2())
                           .floor_()
                           .clamp_(-kMaxExponent, kMaxExponent);  // all-zero rows: +120, harmless
  at::Tensor out = at::empty({values.size(0), values.size(1) + 1}, values.options().dtype(wire));
  out.narrow(1, 0, values.size(1)).copy_(values * at::exp2(k));
  out.narrow(1, values.size(1), 1).copy_(k);
  return out;
}

// The inverse, in fp32: [rows, n + 1] → [rows, n].
at::Tensor decode(const at::Tensor& wire) {
  const int64_t n = wire.size(1) - 1;
  return wire.narrow(1, 0, n).to(at::kFloat) * at::exp2(-wire.narrow(1, n, 1).to(at::kFloat));
}

}  // namespace

CompressedReducer::CompressedReducer(Communicator& communicator, at::ScalarType wire)
    : communicator_(communicator), wire_(wire) {
  if (wire != at::kBFloat16 && wire != at::kHalf)
    throw ConfigError(fmt::format("a compressed reduction sends bf16 or fp16, not {}", c10::toString(wire)));
}

CompressedReducer::Sum CompressedReducer::start(const at::Tensor& flat, int64_t chunk) {
  TORCH_CHECK(flat.dim() == 1 && flat.is_contiguous() && flat.scalar_type() == at::kFloat,
              "a compressed reduction sums a contiguous 1-D fp32 tensor");
  const int64_t r = world_size(), n = flat.numel();
  Sum s;
  s.flat = flat;
  at::Tensor padded = flat;
  if (chunk * r != n) {
    padded = at::zeros({chunk * r}, flat.options());
    padded.narrow(0, 0, n).copy_(flat);
  }
  s.send = encode(padded.view({r, chunk}), wire_);
  s.recv = at::empty_like(s.send);
  s.ticket = communicator_.start_all_to_all(s.send, s.recv);
  ++calls_;
  bytes_ += n * 2;
  return s;
}

void CompressedReducer::start_sum(const at::Tensor& flat) {
  const int64_t r = world_size();
  sums_.push_back(start(flat, (flat.numel() + r - 1) / r));
}

void CompressedReducer::sum_across_ranks(const at::Tensor& flat) {
  start_sum(flat);
  wait_pending();
}

void CompressedReducer::start_reduce(const at::Tensor& flat, int root) {
  TORCH_CHECK(
      flat.dim() == 1 && flat.is_contiguous() && flat.scalar_type() == at::kFloat && root >= 0 && root < world_size(),
      "a compressed reduce sums a contiguous 1-D fp32 tensor to a rank of the group");
  Sum s;
  s.flat = flat;
  s.root = root;
  s.send = encode(flat.view({1, flat.numel()}), wire_);
  if (rank() == root) s.recv = at::empty({world_size(), flat.numel() + 1}, s.send.options());
  s.ticket = communicator_.start_gather(s.send, s.recv, root);
  ++calls_;
  bytes_ += flat.numel() * 2;
  sums_.push_back(std::move(s));
}

void CompressedReducer::wait_pending() {
  const int64_t r = world_size();
  // Step 2 of every sum started, in the order started (the same on every rank), then step 3.
  std::vector<Sum*> gathering;
  for (Sum& s : sums_) {
    communicator_.wait_gather(s.ticket);
    if (s.root >= 0) {  // a reduce: the root sums the rounded contributions
      if (rank() == s.root) s.flat.copy_(decode(s.recv).sum(0));
      continue;
    }
    const at::Tensor mine = decode(s.recv).sum(0, /*keepdim=*/true);  // this rank's chunk of the sum
    s.send = encode(mine, wire_).expand({r, -1}).contiguous();        // the same chunk to every rank
    s.ticket = communicator_.start_all_to_all(s.send, s.recv);
    gathering.push_back(&s);
  }
  for (Sum* s : gathering) {
    communicator_.wait_gather(s->ticket);
    s->flat.copy_(decode(s->recv).view({-1}).narrow(0, 0, s->flat.numel()));
  }
  sums_.clear();
  communicator_.wait_pending();  // anything else in flight (ZeRO-3's prefetched gathers)
}

void CompressedReducer::reduce_scatter(const at::Tensor& flat, const at::Tensor& shard) {
  TORCH_CHECK(shard.dim() == 1 && shard.is_contiguous() && flat.numel() == shard.numel() * world_size(),
              "reduce_scatter takes a contiguous 1-D tensor of world_size × the shard's elements");
  Sum s = start(flat, shard.numel());
  communicator_.wait_gather(s.ticket);
  shard.copy_(decode(s.recv).sum(0));  // the fp32 sum of the rounded contributions: no second rounding
}

void CompressedReducer::all_gather(const at::Tensor& shard, const at::Tensor& flat) {
  communicator_.all_gather(shard, flat);
}

int64_t CompressedReducer::start_all_gather(const at::Tensor& shard, const at::Tensor& flat) {
  return communicator_.start_all_gather(shard, flat);
}

void CompressedReducer::wait_gather(int64_t ticket) { communicator_.wait_gather(ticket); }

void CompressedReducer::sum_exact(const at::Tensor& flat) { communicator_.sum_across_ranks(flat); }

int64_t CompressedReducer::calls() const { return communicator_.calls() + calls_; }
int64_t CompressedReducer::bytes() const { return communicator_.bytes() + bytes_; }

}  // namespace gradacc
