#include "log/event_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <boost/crc.hpp>
#include "gradacc/errors.h"

namespace gradacc {
namespace {

namespace fs = std::filesystem;

// Boost's CRC with the Castagnoli polynomial, reflected, all-ones in and out: CRC-32C.
using Crc32c = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

void put_le(char* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

// The seconds part of an existing event file's name (events.out.tfevents.<seconds>.…); 0 if none.
int64_t seconds_in_name(const std::string& name) {
  constexpr std::string_view prefix = "events.out.tfevents.";
  if (!name.starts_with(prefix)) return 0;
  int64_t v = 0;
  for (size_t i = prefix.size(); i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) v = v * 10 + (name[i] - '0');
  return v;
}

// Built without {fmt}: this file compiles apart from LibTorch, which brings it (CMakeLists.txt).
std::string failed(const std::string& what, const std::string& path, const std::string& why) {
  return "cannot write TensorBoard " + what + " " + path + ": " + why;
}

std::string host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

}  // namespace

uint32_t masked_crc32c(std::string_view data) {
  Crc32c crc;
  crc.process_bytes(data.data(), data.size());
  const uint32_t c = crc.checksum();
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

EventFile::EventFile(const std::string& dir, std::chrono::milliseconds flush_every) : flush_every_(flush_every) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw IoError(failed("directory", dir, ec ? ec.message() : std::string("it exists and is not a directory")));
  }
  int64_t seconds = static_cast<int64_t>(std::time(nullptr));
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
    seconds = std::max(seconds, seconds_in_name(e.path().filename().string()) + 1);
  char stamp[32];
  std::snprintf(stamp, sizeof(stamp), "%010lld", static_cast<long long>(seconds));
  path_ = (fs::path(dir) /
           ("events.out.tfevents." + std::string(stamp) + "." + host_name() + "." + std::to_string(getpid())))
              .string();
  // "x": never clobber a file that is already there (another process's, the same second).
  file_ = std::fopen(path_.c_str(), "wbx");
  if (!file_) throw IoError(failed("event file", path_, std::strerror(errno)));
  flusher_ = std::thread([this] { run_flusher(); });
}

EventFile::~EventFile() {
  try {
    close();
  } catch (const std::exception&) {  // a destructor must not throw; close() reports it
  }
}

void EventFile::append(std::string_view record) {
  char header[12];
  put_le(header, record.size(), 8);
  put_le(header + 8, masked_crc32c(std::string_view(header, 8)), 4);
  char footer[4];
  put_le(footer, masked_crc32c(record), 4);
  std::lock_guard lock(mutex_);
  if (!error_.empty()) throw IoError(error_);
  if (!file_) throw IoError(failed("event file", path_, "it is closed"));
  if (std::fwrite(header, 1, sizeof(header), file_) != sizeof(header) ||
      std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fwrite(footer, 1, sizeof(footer), file_) != sizeof(footer)) {
    throw IoError(failed("event file", path_, std::strerror(errno)));
  }
  dirty_ = true;
}

void EventFile::flush_locked() {
  if (!file_ || !dirty_) return;
  dirty_ = false;
  if (std::fflush(file_) != 0) error_ = failed("event file", path_, std::strerror(errno));
}

void EventFile::flush() {
  std::lock_guard lock(mutex_);
  flush_locked();
  if (!error_.empty()) throw IoError(error_);
}

void EventFile::run_flusher() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, flush_every_, [this] { return stopping_; });
    flush_locked();
  }
}

void EventFile::close() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  std::lock_guard lock(mutex_);
  flush_locked();
  if (file_ && std::fclose(file_) != 0 && error_.empty()) error_ = failed("event file", path_, std::strerror(errno));
  file_ = nullptr;
  if (!error_.empty()) throw IoError(error_);
}

}  // namespace gradacc
