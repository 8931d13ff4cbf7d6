#include "vae_ddp/base/fault_injection.h"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"

namespace vae {

namespace {

struct Fault {
  std::string kind;  // "" = none
  int rank = -1;
  int64_t at = -1;
};

Fault parse_fault() {
  const char* text = std::getenv("VAE_DDP_TEST_FAULT");
  if (!text || !*text) return {};
  std::smatch m;
  const std::string s = text;
  if (!std::regex_match(s, m,
                        std::regex(R"((throw|stall|nan|signal|overflow|slowsave|commsetup|collstall):(\d+):(\d+))"))) {
    throw UsageError(fmt::format(
        "VAE_DDP_TEST_FAULT={}: expected throw|stall|nan|signal|overflow|slowsave|commsetup|collstall:RANK:AT", s));
  }
  return {m[1], std::stoi(m[2]), std::stoll(m[3])};
}

}  // namespace

FaultAction maybe_inject_fault(FaultSite site, int rank, int64_t at) {
  static const Fault fault = parse_fault();
  if (fault.kind.empty() || fault.rank != rank || fault.at != at) return FaultAction::kNone;
  const FaultSite site_of_kind = fault.kind == "slowsave"    ? FaultSite::kSave
                                 : fault.kind == "commsetup" ? FaultSite::kCommSetup
                                 : fault.kind == "collstall" ? FaultSite::kCollective
                                                             : FaultSite::kStep;
  if (site != site_of_kind) return FaultAction::kNone;
  if (fault.kind == "commsetup") {
    throw std::runtime_error(
        fmt::format("injected fault (VAE_DDP_TEST_FAULT): communicator set-up failed on rank {}", rank));
  }
  if (fault.kind == "throw") {
    throw std::runtime_error(fmt::format("injected fault (VAE_DDP_TEST_FAULT) at step {}", at));
  }
  if (fault.kind == "nan") return FaultAction::kPoisonBatch;
  if (fault.kind == "overflow") return FaultAction::kOverflowGradients;
  if (fault.kind == "collstall") return FaultAction::kStallCollective;
  if (fault.kind == "signal") {
    std::raise(SIGUSR1);
    return FaultAction::kNone;
  }
  if (fault.kind == "slowsave") {
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return FaultAction::kNone;
  }
  stall_forever();  // stall: a peer that stops answering
}

void stall_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace vae
