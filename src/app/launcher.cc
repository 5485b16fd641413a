#include "app/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "sync/rendezvous_host.h"

namespace gradacc {
namespace {

volatile std::sig_atomic_t g_forward_signal = 0;
extern "C" void on_launcher_signal(int sig) { g_forward_signal = sig; }

struct Rank {
  pid_t pid = -1;
  int fd = -1;          // read end of the rank's stdout+stderr
  std::string partial;  // output not yet ended by a newline
  bool running = true;
};

// Everything a child needs is built before fork(): the launcher has threads (the store's), so
// the child only duplicates descriptors and execs.
struct RankCommand {
  std::vector<std::string> env_strings;
  std::vector<char*> argv, envp;
};

RankCommand rank_command(const LaunchOptions& o, int port, int rank, int attempt) {
  const std::vector<std::pair<std::string, std::string>> ours = {
      {"RANK", std::to_string(rank)},           {"LOCAL_RANK", std::to_string(rank)},
      {"WORLD_SIZE", std::to_string(o.nproc)},  {"LOCAL_WORLD_SIZE", std::to_string(o.nproc)},
      {"MASTER_ADDR", o.master_addr},           {"MASTER_PORT", std::to_string(port)},
      {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", std::to_string(attempt)},
  };
  RankCommand c;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (std::none_of(ours.begin(), ours.end(), [&](const auto& kv) { return kv.first == name; }))
      c.env_strings.push_back(entry);
  }
  for (const auto& [name, value] : ours) c.env_strings.push_back(name + "=" + value);
  for (std::string& e : c.env_strings) c.envp.push_back(e.data());
  c.envp.push_back(nullptr);
  c.argv.push_back(const_cast<char*>(o.executable.c_str()));
  for (const std::string& a : o.args) c.argv.push_back(const_cast<char*>(a.c_str()));
  c.argv.push_back(nullptr);
  return c;
}

[[noreturn]] void exec_rank(const char* executable, const RankCommand& c, int write_fd, pid_t launcher) {
  // A rank outlives no launcher: killed with it, the ranks get SIGTERM (and checkpoint, as when
  // preempted) instead of training on unwatched. The launcher may already be gone by now.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != launcher) ::_exit(128 + SIGTERM);
  ::dup2(write_fd, STDOUT_FILENO);
  ::dup2(write_fd, STDERR_FILENO);
  ::close_range(3, ~0U, 0);  // the store's sockets and the other ranks' pipes stay with the launcher
  ::execve(executable, c.argv.data(), c.envp.data());
  const int err = errno;
  const std::string message = fmt::format("gradacc launch: cannot run {}: {}\n", executable, std::strerror(err));
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, message.data(), message.size());
  ::_exit(127);
}

void flush_lines(Rank& r, int index, std::ostream& out, bool all) {
  size_t start = 0;
  for (size_t nl; (nl = r.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
    out << "[rank " << index << "] " << r.partial.substr(start, nl - start) << "\n";
  }
  r.partial.erase(0, start);
  if (all && !r.partial.empty()) {
    out << "[rank " << index << "] " << r.partial << "\n";
    r.partial.clear();
  }
  out.flush();
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

std::string describe(int status) {
  return WIFEXITED(status) ? fmt::format("exited with status {}", WEXITSTATUS(status))
                           : fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
}

// One attempt: starts the ranks, forwards their output and signals, and returns when all have
// ended: 0, or the first failure's exit status.
int run_attempt(const LaunchOptions& o, int port, int attempt, std::ostream& out, std::ostream& log) {
  std::vector<RankCommand> commands;
  for (int i = 0; i < o.nproc; ++i) commands.push_back(rank_command(o, port, i, attempt));
  const pid_t launcher = ::getpid();
  std::vector<Rank> ranks(o.nproc);
  for (int i = 0; i < o.nproc; ++i) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      throw std::runtime_error(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(fmt::format("cannot start rank {}: {}", i, std::strerror(errno)));
    if (pid == 0) {
      ::close(fds[0]);
      exec_rank(o.executable.c_str(), commands[i], fds[1], launcher);
    }
    ::close(fds[1]);
    ranks[i].pid = pid;
    ranks[i].fd = fds[0];
  }

  int result = 0;
  bool stopping = false;
  std::chrono::steady_clock::time_point kill_at{};
  auto stop_all = [&](int sig) {
    for (Rank& r : ranks) {
      if (r.running) ::kill(r.pid, sig);
    }
  };
  for (;;) {
    // Output first, so a failing rank's last words are printed before the launcher's verdict.
    std::vector<pollfd> fds;
    std::vector<int> owner;
    for (int i = 0; i < o.nproc; ++i) {
      if (ranks[i].fd >= 0) {
        fds.push_back({ranks[i].fd, POLLIN, 0});
        owner.push_back(i);
      }
    }
    if (!fds.empty()) ::poll(fds.data(), fds.size(), 100);
    for (size_t k = 0; k < fds.size(); ++k) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Rank& r = ranks[owner[k]];
      char buf[4096];
      const ssize_t n = ::read(r.fd, buf, sizeof buf);
      if (n > 0) {
        r.partial.append(buf, static_cast<size_t>(n));
        flush_lines(r, owner[k], out, false);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        flush_lines(r, owner[k], out, true);
        ::close(r.fd);
        r.fd = -1;
      }
    }

    if (g_forward_signal != 0 && !stopping) {
      log << fmt::format("[launch] received signal {}; passing it to every rank\n", static_cast<int>(g_forward_signal));
      stop_all(g_forward_signal);
      stopping = true;
      kill_at =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_seconds * 1000));
      if (result == 0) result = 128 + g_forward_signal;
    }

    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      for (int i = 0; i < o.nproc; ++i) {
        if (ranks[i].pid != pid) continue;
        ranks[i].running = false;
        if (status != 0 && !stopping) {
          log << fmt::format("[launch] rank {} {}; stopping the other ranks\n", i, describe(status));
          result = exit_code(status);
          stopping = true;
          stop_all(SIGTERM);
          kill_at = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(o.grace_seconds * 1000));
        } else if (status != 0 && result == 0) {
          result = exit_code(status);
        }
      }
    }
    const bool any_running = std::any_of(ranks.begin(), ranks.end(), [](const Rank& r) { return r.running; });
    const bool any_output = std::any_of(ranks.begin(), ranks.end(), [](const Rank& r) { return r.fd >= 0; });
    if (!any_running && !any_output) break;
    if (stopping && any_running && std::chrono::steady_clock::now() > kill_at) {
      log << "[launch] ranks still running after the grace period; killing them\n";
      stop_all(SIGKILL);
      kill_at = std::chrono::steady_clock::time_point::max();
    }
  }
  return result;
}

}  // namespace

int launch_local(const LaunchOptions& options, std::ostream& out, std::ostream& log) {
  LaunchOptions o = options;
  if (o.nproc < 1 || o.nproc > 1024)
    throw std::invalid_argument(fmt::format("--nproc must be in 1..1024, got {}", o.nproc));
  if (o.master_port < 0 || o.master_port > 65535) {
    throw std::invalid_argument(
        fmt::format("--master-port must be in 0..65535 (0: a free port), got {}", o.master_port));
  }
  if (o.max_restarts < 0 || o.max_restarts > 1000)
    throw std::invalid_argument(fmt::format("--max-restarts must be in 0..1000, got {}", o.max_restarts));
  if (o.args.empty())
    throw std::invalid_argument("nothing to launch: give the command after --, e.g. -- train --model mlp");
  if (o.executable.empty()) o.executable = "/proc/self/exe";
  // One store for every attempt: the ranks keep each attempt's keys apart (sync/dist_env.h).
  const RendezvousHost store(o.master_addr, o.master_port);

  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  g_forward_signal = 0;
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  int result = 0;
  for (int attempt = 0;; ++attempt) {
    result = run_attempt(o, store.port(), attempt, out, log);
    // A signal to the launcher is a request to stop, never a failure to recover from.
    if (result == 0 || g_forward_signal != 0 || attempt == o.max_restarts) break;
    log << fmt::format("[launch] restarting all ranks: attempt {} of {}\n", attempt + 2, o.max_restarts + 1);
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace gradacc
