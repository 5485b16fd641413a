// A TensorBoard event file: TFRecord framing (each record is its length, a masked CRC-32C of the
// length, the bytes, and a masked CRC-32C of the bytes, all little-endian), appended to one file.
// A crash leaves at most a cut last record, which readers skip: everything before it still reads.
//
// Owns the file and a flusher thread: what is written reaches the file within `flush_every` (10 s
// by default) even when no further record comes, so that a run can be watched live, without a
// write per step. Thread safety: append() from one thread; the flusher takes the same lock.
// Errors: IoError naming the file when it cannot be created or a write fails (a full disk); a
// failure met by the flusher is thrown by the next append() or close().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace gradacc {

// CRC-32C (Castagnoli) of `data`, masked as TFRecord stores it (rotated right by 15, plus a constant).
uint32_t masked_crc32c(std::string_view data);

class EventFile {
 public:
  // Creates `dir` (and its parents) and a new file in it named as TensorBoard names its own,
  // events.out.tfevents.<seconds>.<host>.<pid>, with <seconds> past every event file already there so
  // that a resumed run's file sorts after the run it continues.
  explicit EventFile(const std::string& dir, std::chrono::milliseconds flush_every = std::chrono::milliseconds(10'000));
  ~EventFile();  // flushes and closes; errors here are swallowed (call close() to see them)
  EventFile(const EventFile&) = delete;
  EventFile& operator=(const EventFile&) = delete;

  void append(std::string_view record);
  void flush();
  void close();
  const std::string& path() const { return path_; }

 private:
  void flush_locked();
  void run_flusher();

  std::string path_;
  std::FILE* file_ = nullptr;
  std::chrono::milliseconds flush_every_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool dirty_ = false;
  bool stopping_ = false;
  std::string error_;  // the flusher's failure, thrown by the next call
  std::thread flusher_;
};

}  // namespace gradacc
