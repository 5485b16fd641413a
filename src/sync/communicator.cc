#include "sync/communicator.h"

#include <algorithm>
#include <future>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <ATen/ops/full.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "device/backend.h"
#include "gradacc/errors.h"

namespace gradacc {

struct Communicator::Pending {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::vector<std::vector<at::Tensor>> tensors;  // kept alive until waited
  struct Gather {
    int64_t ticket;
    c10::intrusive_ptr<c10d::Work> work;
    at::Tensor in, out;
  };
  std::vector<Gather> gathers;  // ZeRO-3's all-gathers in flight
  int64_t next_ticket = 1;
};

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> group;  // Gloo for CPU tensors, NCCL for CUDA ones
};

namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

struct ConfigMismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

Communicator::Communicator(const DistEnv& env, CommunicatorOptions options)
    : impl_(std::make_unique<Impl>()), env_(env), options_(options), pending_(std::make_unique<Pending>()) {
  if (options_.bucket_bytes < 1) throw ConfigError("bucket_bytes must be ≥ 1");
  quiet_c10d_logs();
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env_.master_port);
    so.isServer = hosts_store();
    // Every rank counts itself in and rank 0's store waits for all of them; a launcher's store
    // (which serves no count) is joined without one.
    if (env_.launcher_hosts_store) {
      so.waitWorkers = false;
    } else {
      so.numWorkers = env_.world_size;
      so.waitWorkers = true;
    }
    so.timeout = options_.timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
    // Each attempt's keys apart: a launcher's store outlives a failed attempt's ranks.
    impl_->store = c10::make_intrusive<c10d::PrefixStore>(fmt::format("gradacc/attempt{}", env_.attempt), tcp);
  } catch (const std::exception& e) {
    throw DistributedError(fmt::format("rank {}: cannot {} the rendezvous store{} at {}:{} within {} s: {}", env_.rank,
                                       hosts_store() ? "start" : "reach",
                                       env_.launcher_hosts_store ? " (hosted by the launcher)" : "", env_.master_addr,
                                       env_.master_port, options_.timeout.count() / 1000, first_line(e.what())));
  }
  const bool nccl = options_.device.is_cuda();
  try {
    if (nccl) {  // one GPU per rank
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gradacc/nccl", impl_->store);
      impl_->group = backend::make_nccl_group(prefixed, env_.rank, env_.world_size, options_.timeout,
                                              options_.device.has_index() ? options_.device.index() : 0);
    } else {
      auto go = c10d::ProcessGroupGloo::Options::create(options_.timeout);
      // Bind Gloo to the same address family and interface as the store.
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env_.master_addr));
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gradacc/gloo", impl_->store);
      impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, env_.rank, env_.world_size, go);
    }
  } catch (const std::exception& e) {
    throw DistributedError(fmt::format("rank {}: cannot form the {} group of {} ranks: {}", env_.rank,
                                       nccl ? "NCCL" : "Gloo", env_.world_size, first_line(e.what())));
  }
}

Communicator::~Communicator() = default;

void Communicator::fail(const std::string& what, const std::exception& e) {
  // Name the ranks that stopped answering: every survivor signs a roll call in the store and
  // waits a few seconds for the others. (The broken Gloo group itself cannot be asked.) The roll
  // call runs on a thread of its own with a deadline: when rank 0, which hosts the store, is
  // stopped rather than dead, a store request can block in recv() for ever, and the failure path
  // must not hang where the training path did not.
  constexpr auto kRollCall = std::chrono::seconds(5);
  const std::string store_host_silent = env_.launcher_hosts_store
                                            ? "the launcher, which hosts the rendezvous store, did not answer"
                                            : "rank 0, which hosts the rendezvous store, did not answer";
  const bool host = hosts_store();
  auto answer = std::make_shared<std::promise<std::string>>();
  std::future<std::string> who_future = answer->get_future();
  std::thread([store = impl_->store, rank = env_.rank, world = env_.world_size, answer, kRollCall, store_host_silent,
               host] {
    std::string who;
    try {
      store->setTimeout(kRollCall);
      store->set(fmt::format("gradacc/rollcall/{}", rank), std::vector<uint8_t>{1});
      const auto deadline = std::chrono::steady_clock::now() + kRollCall;
      std::vector<int> missing;
      do {
        missing.clear();
        for (int r = 0; r < world; ++r) {
          if (!store->check({fmt::format("gradacc/rollcall/{}", r)})) missing.push_back(r);
        }
        if (missing.empty()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      } while (std::chrono::steady_clock::now() < deadline);
      if (!missing.empty())
        who = fmt::format("rank{} {} did not answer", missing.size() > 1 ? "s" : "", fmt::join(missing, ", "));
    } catch (const std::exception&) {
      who = host ? "" : store_host_silent;
    }
    answer->set_value(who);
  }).detach();
  std::string who = store_host_silent;
  if (who_future.wait_for(kRollCall + std::chrono::seconds(3)) == std::future_status::ready)
    who = who_future.get();
  else if (host)
    who = "";
  throw DistributedError(
      fmt::format("rank {}: {} failed{}: {}", env_.rank, what,
                  who.empty() ? fmt::format(" (a peer died or stalled past {} s)", options_.timeout.count() / 1000)
                              : " because " + who,
                  first_line(e.what())));
}

void Communicator::sum_across_ranks(const at::Tensor& flat) {
  TORCH_CHECK(flat.dim() == 1 && flat.is_contiguous(), "sum_across_ranks takes a contiguous 1-D tensor");
  // Every bucket launched before any is waited on: Gloo works on them concurrently.
  const int64_t per_bucket = std::max<int64_t>(1, options_.bucket_bytes / static_cast<int64_t>(flat.element_size()));
  for (int64_t begin = 0; begin < flat.numel(); begin += per_bucket)
    start_sum(flat.narrow(0, begin, std::min(per_bucket, flat.numel() - begin)));
  wait_pending();
}

void Communicator::start_sum(const at::Tensor& flat) {
  TORCH_CHECK(flat.dim() == 1 && flat.is_contiguous(), "start_sum takes a contiguous 1-D tensor");
  try {
    pending_->tensors.push_back({flat});
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = options_.timeout;
    pending_->works.push_back(impl_->group->allreduce(pending_->tensors.back(), o));
    ++calls_;
    bytes_ += static_cast<int64_t>(flat.nbytes());
  } catch (const std::exception& e) {
    fail("gradient all-reduce", e);
  }
}

void Communicator::start_reduce(const at::Tensor& flat, int root) {
  TORCH_CHECK(flat.dim() == 1 && flat.is_contiguous() && root >= 0 && root < env_.world_size,
              "start_reduce takes a contiguous 1-D tensor and a rank of the group");
  try {
    pending_->tensors.push_back({flat});
    c10d::ReduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.rootRank = root;
    o.timeout = options_.timeout;
    pending_->works.push_back(impl_->group->reduce(pending_->tensors.back(), o));
    ++calls_;
    bytes_ += static_cast<int64_t>(flat.nbytes());
  } catch (const std::exception& e) {
    fail("gradient reduce", e);
  }
}

void Communicator::wait_pending() {
  try {
    for (auto& w : pending_->works) w->wait(options_.timeout);
    for (auto& g : pending_->gathers) g.work->wait(options_.timeout);
  } catch (const std::exception& e) {
    pending_->works.clear();
    pending_->tensors.clear();
    pending_->gathers.clear();
    fail("gradient reduction", e);
  }
  pending_->works.clear();
  pending_->tensors.clear();
  pending_->gathers.clear();
}

int64_t Communicator::start_all_gather(const at::Tensor& shard, const at::Tensor& flat) {
  TORCH_CHECK(flat.dim() == 1 && flat.is_contiguous() && shard.dim() == 1 && shard.is_contiguous() &&
                  flat.numel() == shard.numel() * env_.world_size,
              "start_all_gather takes a contiguous 1-D tensor of world_size × the shard's elements");
  try {
    Pending::Gather g{pending_->next_ticket++, {}, shard, flat};
    c10d::AllgatherOptions o;
    o.timeout = options_.timeout;
    g.work = impl_->group->_allgather_base(g.out, g.in, o);
    pending_->gathers.push_back(std::move(g));
    ++calls_;
    bytes_ += static_cast<int64_t>(shard.nbytes());
    return pending_->gathers.back().ticket;
  } catch (const std::exception& e) {
    fail("parameter all-gather", e);
  }
}

int64_t Communicator::start_all_to_all(const at::Tensor& send, const at::Tensor& recv) {
  TORCH_CHECK(send.is_contiguous() && recv.is_contiguous() && send.numel() == recv.numel() &&
                  send.numel() % env_.world_size == 0 && send.scalar_type() == recv.scalar_type(),
              "start_all_to_all takes two contiguous tensors of world_size equal chunks");
  try {
    Pending::Gather g{pending_->next_ticket++, {}, send, recv};
    std::vector<int64_t> equal;  // empty: equal chunks
    c10d::AllToAllOptions o;
    o.timeout = options_.timeout;
    g.work = impl_->group->alltoall_base(g.out, g.in, equal, equal, o);
    pending_->gathers.push_back(std::move(g));
    return pending_->gathers.back().ticket;
  } catch (const std::exception& e) {
    fail("gradient all-to-all", e);
  }
}

int64_t Communicator::start_gather(const at::Tensor& in, const at::Tensor& out, int root) {
  const bool here = env_.rank == root;
  TORCH_CHECK(in.is_contiguous() && root >= 0 && root < env_.world_size &&
                  (!here || (out.is_contiguous() && out.numel() == in.numel() * env_.world_size)),
              "start_gather takes a contiguous tensor, and on the root one of world_size times its elements");
  try {
    Pending::Gather g{pending_->next_ticket++, {}, in, out};
    std::vector<std::vector<at::Tensor>> outputs;
    if (here) outputs.push_back(out.view({env_.world_size, in.numel()}).unbind(0));
    std::vector<at::Tensor> inputs{in.view({in.numel()})};
    c10d::GatherOptions o;
    o.rootRank = root;
    o.timeout = options_.timeout;
    g.work = impl_->group->gather(outputs, inputs, o);
    pending_->gathers.push_back(std::move(g));
    return pending_->gathers.back().ticket;
  } catch (const std::exception& e) {
    fail("gradient gather", e);
  }
}

void Communicator::wait_gather(int64_t ticket) {
  auto& all = pending_->gathers;
  const auto it = std::find_if(all.begin(), all.end(), [&](const Pending::Gather& g) { return g.ticket == ticket; });
  if (it == all.end()) return;  // waited already (by wait_pending)
  try {
    it->work->wait(options_.timeout);
  } catch (const std::exception& e) {
    all.clear();
    fail("parameter all-gather", e);
  }
  all.erase(it);
}

void Communicator::reduce_scatter(const at::Tensor& flat, const at::Tensor& shard) {
  TORCH_CHECK(flat.dim() == 1 && flat.is_contiguous() && shard.dim() == 1 && shard.is_contiguous() &&
                  flat.numel() == shard.numel() * env_.world_size,
              "reduce_scatter takes a contiguous 1-D tensor of world_size × the shard's elements");
  if (!options_.device.is_cuda()) {
    // c10d's Gloo reduce-scatter is an all-reduce of a copy of the whole input followed by a copy
    // of this rank's chunk (ProcessGroupGloo::reduce_scatter_tensor_coalesced). The input is ours
    // to overwrite, so it is all-reduced in place instead: the same sums without that transient
    // copy of the buffer.
    sum_across_ranks(flat);
    shard.copy_(flat.narrow(0, env_.rank * shard.numel(), shard.numel()));
    return;
  }
  try {  // NCCL: a real reduce-scatter, each rank receiving only its chunk
    at::Tensor in = flat, out = shard;
    c10d::ReduceScatterOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = options_.timeout;
    impl_->group->_reduce_scatter_base(out, in, o)->wait(options_.timeout);
    ++calls_;
    bytes_ += static_cast<int64_t>(flat.nbytes());
  } catch (const std::exception& e) {
    fail("gradient reduce-scatter", e);
  }
}

void Communicator::all_gather(const at::Tensor& shard, const at::Tensor& flat) {
  TORCH_CHECK(flat.dim() == 1 && flat.is_contiguous() && shard.dim() == 1 && shard.is_contiguous() &&
                  flat.numel() == shard.numel() * env_.world_size,
              "all_gather takes a contiguous 1-D tensor of world_size × the shard's elements");
  try {
    at::Tensor in = shard, out = flat;
    c10d::AllgatherOptions o;
    o.timeout = options_.timeout;
    impl_->group->_allgather_base(out, in, o)->wait(options_.timeout);
    ++calls_;
    bytes_ += static_cast<int64_t>(shard.nbytes());
  } catch (const std::exception& e) {
    fail("parameter all-gather", e);
  }
}

bool Communicator::all_agree(bool ok) { return all_sum(ok ? 0 : 1) == 0; }  // no rank failed

int64_t Communicator::all_sum(int64_t value) {
  at::Tensor sum =
      at::full({1}, static_cast<double>(value), at::TensorOptions().dtype(at::kDouble).device(options_.device));
  try {
    std::vector<at::Tensor> t{sum};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = options_.timeout;
    impl_->group->allreduce(t, o)->wait(options_.timeout);
  } catch (const std::exception& e) {
    fail("agreement", e);  // all_agree() is this sum
  }
  return static_cast<int64_t>(sum.cpu().item<double>());
}

void Communicator::check_same_config(const std::string& description) {
  const std::string key = fmt::format("gradacc/config/{}", env_.rank);
  try {
    impl_->store->set(key, std::vector<uint8_t>(description.begin(), description.end()));
    const std::vector<uint8_t> zero = impl_->store->get("gradacc/config/0");
    const std::string reference(zero.begin(), zero.end());
    // Every rank checks every other, so all of them fail together on a mismatch.
    for (int r = 1; r < env_.world_size; ++r) {
      const std::vector<uint8_t> v = impl_->store->get(fmt::format("gradacc/config/{}", r));
      const std::string other(v.begin(), v.end());
      if (other == reference) continue;
      std::istringstream a(reference), b(other);
      std::string la, lb;
      while (std::getline(a, la) && std::getline(b, lb) && la == lb) {
      }
      throw ConfigMismatch(fmt::format(
          "rank {} runs another configuration than rank 0: rank 0 has '{}', rank {} has '{}'", r, la, r, lb));
    }
  } catch (const ConfigMismatch&) {
    throw;
  } catch (const std::exception& e) {
    throw DistributedError(
        fmt::format("rank {}: configuration check through the store failed: {}", env_.rank, first_line(e.what())));
  }
}

}  // namespace gradacc
