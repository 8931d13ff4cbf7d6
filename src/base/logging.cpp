#include "vae_ddp/base/logging.h"

#include <cstdio>
#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

namespace vae {

namespace {

// Results and progress (info) to stdout, warnings and errors to stderr: `vae_ddp ... > log`
// keeps the run's lines, and a warning still reaches the terminal.
class SplitSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    std::FILE* to = msg.level >= spdlog::level::warn ? stderr : stdout;
    std::fwrite(line.data(), 1, line.size(), to);
    std::fflush(to);
  }
  void flush_() override {
    std::fflush(stdout);
    std::fflush(stderr);
  }
};

}  // namespace

void init_logging(int rank) {
  spdlog::drop("vae_ddp");
  auto logger = std::make_shared<spdlog::logger>("vae_ddp", std::make_shared<SplitSink>());
  if (rank == 0) {
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
  } else {
    logger->set_pattern(fmt::format("[rank {}] %l: %v", rank));
    logger->set_level(spdlog::level::warn);
  }
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace vae
