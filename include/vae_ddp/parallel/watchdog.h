// The no-hang guarantee: a thread that ends the whole job when a collective outlives
// its deadline (a peer stopped answering) or when a backend reports an asynchronous
// error, instead of leaving every rank waiting forever.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "vae_ddp/parallel/world.h"

namespace vae {

class Watchdog {
 public:
  // `poll` runs every tick on the watchdog thread; a non-empty result is a failure
  // message. `before_abort` runs on failure before the job is aborted (e.g. ncclCommAbort).
  Watchdog(World world, std::chrono::seconds timeout, std::function<std::string()> poll = {},
           std::function<void()> before_abort = {});
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // While a Scope lives, the blocking call it names must finish within the timeout.
  class Scope {
   public:
    Scope(Watchdog& dog, const char* what);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Watchdog& dog_;
  };

  std::chrono::seconds timeout() const { return timeout_; }
  // Prints the error line (with host and rank), runs before_abort and ends the job with
  // exit code 1. Callable from any thread.
  [[noreturn]] void fail(const std::string& message);

 private:
  void loop();

  World world_;
  std::chrono::seconds timeout_;
  std::function<std::string()> poll_;
  std::function<void()> before_abort_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  const char* armed_what_ = nullptr;  // the blocking call in progress, guarded by mutex_
  std::chrono::steady_clock::time_point armed_at_;
  std::atomic<bool> failing_{false};
  std::thread thread_;
};

}  // namespace vae
