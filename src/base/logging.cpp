#include "vae_ddp/base/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace vae {

void init_logging(int rank) {
  spdlog::drop("vae_ddp");
  auto logger = spdlog::stdout_logger_mt("vae_ddp");
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
