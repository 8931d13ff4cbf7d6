#include "vae_ddp/parallel/watchdog.h"

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"

namespace vae {

namespace {
constexpr auto kTick = std::chrono::milliseconds(100);
}

Watchdog::Watchdog(World world, std::chrono::seconds timeout, std::function<std::string()> poll,
                   std::function<void()> before_abort)
    : world_(std::move(world)), timeout_(timeout), poll_(std::move(poll)), before_abort_(std::move(before_abort)) {
  thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

Watchdog::Scope::Scope(Watchdog& dog, const char* what) : dog_(dog) {
  std::lock_guard<std::mutex> lock(dog_.mutex_);
  dog_.armed_what_ = what;
  dog_.armed_at_ = std::chrono::steady_clock::now();
}

Watchdog::Scope::~Scope() {
  std::lock_guard<std::mutex> lock(dog_.mutex_);
  dog_.armed_what_ = nullptr;
}

void Watchdog::fail(const std::string& message) {
  if (failing_.exchange(true)) {
    // Another thread is already ending the job.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  print_error(fmt::format("{} (host {}, rank {} of {})", message, world_.host, world_.rank, world_.size), world_.rank);
  if (before_abort_) before_abort_();
  abort_job(world_, kExitRuntime);
}

void Watchdog::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, kTick);
    if (stop_) break;
    if (armed_what_ && std::chrono::steady_clock::now() - armed_at_ > timeout_) {
      const std::string what = armed_what_;
      lock.unlock();
      fail(fmt::format("{} did not complete within {} s: a peer rank stopped answering or died (--comm-timeout)", what,
                       timeout_.count()));
    }
    if (poll_) {
      lock.unlock();
      const std::string problem = poll_();
      if (!problem.empty()) fail(problem);
      lock.lock();
    }
  }
}

}  // namespace vae
