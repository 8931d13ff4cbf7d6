#include "vae_ddp/app/cli.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <cxxopts.hpp>

#include "vae_ddp/app/commands.h"
#include "vae_ddp/app/runtime.h"
#include "vae_ddp/app/version.h"
#include "vae_ddp/base/config.h"
#include "vae_ddp/base/cpu_info.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/base/logging.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/parallel/world.h"
#include "vae_ddp/train/step.h"
#include "vae_ddp/viz/pictures.h"

namespace vae {

namespace {

// The recipes in configs/ that were renamed (their old names read like RNG seeds): the old
// name still loads, with a warning, until the next release.
const std::pair<const char*, const char*> kRenamedRecipes[] = {
    {"seed-001-784-400-20.yaml", "classic-784-400-20.yaml"},
    {"seed-001-784-512-256-32-beta.yaml", "beta-vae-784-512-256-32.yaml"},
    {"seed-004-adamw-256-kl-linear.yaml", "adamw-784-256-20-kl-linear.yaml"},
    {"seed-grids-15-epochs.yaml", "classic-grids-every-epoch.yaml"},
    {"seed-latent-2.yaml", "latent-2d-pictures.yaml"},
};

}  // namespace

std::string recipe_path(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::exists(path)) return path;
  const fs::path given(path);
  for (const auto& [old_name, new_name] : kRenamedRecipes) {
    const fs::path renamed = given.parent_path() / new_name;
    if (given.filename() == old_name && fs::exists(renamed)) {
      if (launcher_rank() == 0) {
        print_warning(fmt::format("--config {}: this recipe is now {}; the old name is read until the next release",
                                  path, renamed.string()));
      }
      return renamed.string();
    }
  }
  return path;
}

namespace {

constexpr const char* kUsage =
    "vae_ddp [train] [--config FILE] [options]\n"
    "  vae_ddp --version                            (vae_ddp, libtorch, CUDA, NCCL, MPI, GEMMs)\n"
    "  mpirun -np N vae_ddp [train] [options]      (one rank per GPU, or CPU ranks)\n"
    "  vae_ddp eval   --checkpoint PATH [--data-dir DIR] [--seed S] [--iw-samples K] [--json]\n"
    "  vae_ddp sample --checkpoint PATH [--n 64] [--out FILE.png] [--seed S] [--label D]\n"
    "  vae_ddp latent-map  --checkpoint PATH [--out FILE.png] [--data-dir DIR]\n"
    "  vae_ddp manifold    --checkpoint PATH [--out FILE.png] [--side 20] [--label D]   (latent dim 2)\n"
    "  vae_ddp interpolate --checkpoint PATH [--out FILE.png] [--pairs 8] [--points 10] [--data-dir DIR]\n"
    "  vae_ddp trace  --out DIR [--steps 20] [train options]  (for tests/oracle/reference.py parity)\n"
    "  vae_ddp export --checkpoint PATH --out FILE.pt [--data-dir DIR]  (weights for Python torch.load)\n"
    "  vae_ddp inspect --checkpoint PATH  (progress and every tensor's SHA-256, as JSON)\n";

// Every option is taken as text and parsed by our own parsers, so each bad value is
// reported with the flag's name.
std::shared_ptr<cxxopts::Value> text_value(bool is_switch = false) {
  auto v = cxxopts::value<std::string>();
  if (is_switch) v->implicit_value("true");
  return v;
}

// Parses argv; prints the help and returns nullopt for -h/--help. Stray arguments are errors.
std::optional<cxxopts::ParseResult> parse_or_help(cxxopts::Options& opts, int argc, char** argv) {
  cxxopts::ParseResult r;
  try {
    r = opts.parse(argc, argv);
  } catch (const cxxopts::exceptions::no_such_option& e) {
    // "Option ‘lrr’ does not exist": the name between the quotes, and the nearest known one.
    const std::string what = e.what();
    const size_t open = what.find(cxxopts::LQUOTE), close = what.rfind(cxxopts::RQUOTE);
    std::string name = open == std::string::npos || close <= open
                           ? ""
                           : what.substr(open + cxxopts::LQUOTE.size(), close - open - cxxopts::LQUOTE.size());
    name.erase(0, name.find_first_not_of('-'));
    std::vector<std::string> known;
    for (const auto& group : opts.groups()) {
      for (const auto& o : opts.group_help(group).options) {
        for (const auto& l : o.l) known.push_back(l);
      }
    }
    const std::string near = closest_name(name, known);
    if (near.empty()) throw;
    throw UsageError(
        fmt::format("unknown option --{}; did you mean --{}? (see {} --help)", name, near, opts.program()));
  }
  if (r.count("help")) {
    fmt::print("{}\n", opts.help());
    return std::nullopt;
  }
  if (!r.unmatched().empty()) throw UsageError(fmt::format("unexpected argument '{}'", r.unmatched().front()));
  return r;
}

std::optional<std::string> text(const cxxopts::ParseResult& r, const std::string& name) {
  if (r.count(name) == 0) return std::nullopt;
  return r[name].as<std::string>();
}

void require_checkpoint(const std::string& path, const char* command) {
  if (path.empty()) throw UsageError(fmt::format("{}: --checkpoint PATH is required", command));
}

// A field's description as the terminal shows it: the Markdown marks (` and **) left out.
std::string plain_text(const std::string& markdown) {
  std::string out;
  for (size_t i = 0; i < markdown.size(); ++i) {
    if (markdown[i] == '`') continue;
    if (markdown.compare(i, 2, "**") == 0) {
      ++i;
      continue;
    }
    out += markdown[i];
  }
  return out;
}

// Every training option: --config and one flag per Config field, with its default.
void add_train_options(cxxopts::Options& opts) {
  opts.add_options()("h,help", "show this help")("config", "YAML file of options (flags override it)", text_value());
  const Config defaults;
  for (const auto& f : config_fields()) {
    const bool is_switch = std::holds_alternative<bool Config::*>(f.member);
    const auto choices = field_choices(f);
    const std::string one_of = choices.empty() ? "" : fmt::format("{}; ", fmt::join(choices, " | "));
    opts.add_options()(f.name,
                       fmt::format("{} ({}default: {})", plain_text(f.help), one_of, field_to_string(defaults, f)),
                       text_value(is_switch));
  }
  for (const auto& o : old_options()) {
    opts.add_options()(o.name, fmt::format("the old name: now {} (read until the next release)", plain_text(o.now)),
                       text_value(/*is_switch=*/true));
  }
}

// The Config of parsed training options, validated (before MPI or NCCL start).
Config train_config(const cxxopts::ParseResult& r) {
  Config c;
  if (auto file = text(r, "config")) c = load_yaml_file(recipe_path(*file), c, /*warn_old_keys=*/launcher_rank() == 0);
  for (const auto& o : old_options()) {  // before the fields: a new flag given too wins
    if (auto v = text(r, o.name)) {
      if (launcher_rank() == 0)
        print_warning(
            fmt::format("--{}: now {}; the old flag is read until the next release", o.name, plain_text(o.now)));
      o.apply(c, *v, std::string("--") + o.name);
    }
  }
  for (const auto& f : config_fields()) {
    if (auto v = text(r, f.name)) field_from_string(c, f, *v, std::string("--") + f.name);
  }
  validate(c);
  // Checked from the device type `auto` resolves to.
  const bool cuda = c.device == DeviceKind::kCuda || (c.device == DeviceKind::kAuto && auto_picks_cuda());
  validate_for_device(c, cuda, cpu_info());
  plan_step(c, cuda);  // an explicit --step that does not cover the model is a usage error
  return c;
}

// Returns nullopt after printing help.
std::optional<Config> parse_train(int argc, char** argv) {
  cxxopts::Options opts("vae_ddp", "Data-parallel VAE trainer for MNIST.\n\n" + std::string(kUsage));
  add_train_options(opts);
  const auto parsed = parse_or_help(opts, argc, argv);
  if (!parsed) return std::nullopt;
  return train_config(*parsed);
}

struct TraceOptions {
  Config config;
  std::string out;
  int64_t steps = 20;
};

std::optional<TraceOptions> parse_trace(int argc, char** argv) {
  TraceOptions o;
  cxxopts::Options opts("vae_ddp trace",
                        "Record the first steps of epoch 1 for tests/oracle/reference.py's parity check.");
  opts.add_options()("out", "directory for trace.json and the .npy files", text_value())(
      "steps", fmt::format("steps to record (default: {})", o.steps), text_value());
  add_train_options(opts);
  const auto parsed = parse_or_help(opts, argc, argv);
  if (!parsed) return std::nullopt;
  o.out = text(*parsed, "out").value_or("");
  if (auto v = text(*parsed, "steps")) o.steps = parse_int(*v, "--steps");
  if (o.out.empty()) throw UsageError("trace: --out DIR is required");
  check_out_dir(o.out, "--out");
  if (o.steps <= 0) throw UsageError(fmt::format("--steps must be positive, got {}", o.steps));
  o.config = train_config(*parsed);
  return o;
}

struct ExportOptions {
  std::string checkpoint, out, data_dir = Config{}.data_dir;
  bool verify_md5 = Config{}.verify_md5;
};

std::optional<ExportOptions> parse_export(int argc, char** argv) {
  ExportOptions o;
  cxxopts::Options opts("vae_ddp export", "Write a checkpoint's weights as a state dict Python's torch.load reads.");
  opts.add_options()("h,help", "show this help")("checkpoint", "checkpoint file", text_value())(
      "out", "the .pt file to write", text_value())(
      "data-dir", "dataset directory (default: the one the checkpoint was trained on)", text_value())(
      "verify-md5", "check the dataset's md5 (default: true)", text_value(true));
  const auto parsed = parse_or_help(opts, argc, argv);
  if (!parsed) return std::nullopt;
  o.checkpoint = text(*parsed, "checkpoint").value_or("");
  o.out = text(*parsed, "out").value_or("");
  o.data_dir = text(*parsed, "data-dir").value_or(o.data_dir);
  if (auto v = text(*parsed, "verify-md5")) o.verify_md5 = parse_bool(*v, "--verify-md5");
  if (o.checkpoint.empty() || o.out.empty())
    throw UsageError("export: --checkpoint PATH and --out FILE.pt are required");
  check_out_file(o.out, "--out");
  return o;
}

std::optional<EvalOptions> parse_eval(int argc, char** argv) {
  EvalOptions o;
  cxxopts::Options opts("vae_ddp eval", "Evaluate a checkpoint on the MNIST test set.");
  opts.add_options()("h,help", "show this help")("checkpoint", "checkpoint file", text_value())(
      "data-dir", "dataset directory (default: the one the checkpoint was trained on)", text_value())(
      "seed", "noise seed (default: the checkpoint's)", text_value())(
      "iw-samples", "also estimate -log p(x) by importance weighting with K samples per image (e.g. 5000)",
      text_value())("json", "print one JSON object", text_value(true))("verify-md5", "check MNIST md5 (default: true)",
                                                                       text_value(true))(
      "threads", "intra-op threads (default: cores)", text_value())("device", "auto | cpu | cuda", text_value());
  const auto parsed = parse_or_help(opts, argc, argv);
  if (!parsed) return std::nullopt;
  const auto& r = *parsed;
  o.checkpoint = text(r, "checkpoint").value_or("");
  o.data_dir = text(r, "data-dir").value_or(o.data_dir);
  if (auto v = text(r, "seed")) o.seed = parse_int(*v, "--seed");
  if (auto v = text(r, "json")) o.json = parse_bool(*v, "--json");
  if (auto v = text(r, "iw-samples")) o.iw_samples = parse_int(*v, "--iw-samples");
  if (auto v = text(r, "verify-md5")) o.verify_md5 = parse_bool(*v, "--verify-md5");
  if (auto v = text(r, "threads")) o.threads = parse_int(*v, "--threads");
  if (auto v = text(r, "device")) o.device = parse_choice<DeviceKind>(*v, "--device");
  require_checkpoint(o.checkpoint, "eval");
  if (o.threads < 0) throw UsageError(fmt::format("--threads must be >= 0, got {}", o.threads));
  if (o.iw_samples < 0) throw UsageError(fmt::format("--iw-samples must be >= 0, got {}", o.iw_samples));
  return o;
}

int64_t parse_label(const std::string& text) {
  const int64_t label = parse_int(text, "--label");
  if (label < 0 || label >= kClasses) throw UsageError(fmt::format("--label must be a class 0..9, got {}", label));
  return label;
}

std::optional<SampleOptions> parse_sample(int argc, char** argv) {
  // cxxopts takes one-letter names only as short options (-n); the contract spells it --n.
  std::vector<std::string> renamed(argv, argv + argc);
  for (auto& a : renamed) {
    if (a == "--n" || a.rfind("--n=", 0) == 0) a = "--count" + a.substr(3);
  }
  std::vector<char*> args;
  for (auto& a : renamed) args.push_back(a.data());
  SampleOptions o;
  cxxopts::Options opts("vae_ddp sample", "Decode z ~ N(0, I) from a checkpoint into a PNG grid.");
  opts.add_options()("h,help", "show this help")("checkpoint", "checkpoint file", text_value())(
      "n,count", "number of samples, also --n (default: 64)", text_value())(
      "out", "PNG path (default: " + o.out + ")", text_value())("seed", "z seed (default: the checkpoint's)",
                                                                text_value())(
      "label", "conditional model: the class to draw (default: 0..9 in turn)", text_value())(
      "device", "auto | cpu | cuda", text_value());
  const auto parsed = parse_or_help(opts, static_cast<int>(args.size()), args.data());
  if (!parsed) return std::nullopt;
  const auto& r = *parsed;
  o.checkpoint = text(r, "checkpoint").value_or("");
  if (auto v = text(r, "count")) o.n = parse_int(*v, "--n");
  o.out = text(r, "out").value_or(o.out);
  if (auto v = text(r, "seed")) o.seed = parse_int(*v, "--seed");
  if (auto v = text(r, "label")) o.label = parse_label(*v);
  if (auto v = text(r, "device")) o.device = parse_choice<DeviceKind>(*v, "--device");
  require_checkpoint(o.checkpoint, "sample");
  if (o.n <= 0) throw UsageError(fmt::format("--n must be positive, got {}", o.n));
  check_out_file(o.out, "--out");
  return o;
}

// `inspect`'s checkpoint path, or nothing after --help.
std::optional<std::string> parse_inspect(int argc, char** argv) {
  cxxopts::Options opts("vae_ddp inspect", "Print a checkpoint's progress and its tensors' SHA-256 as JSON.");
  opts.add_options()("h,help", "show this help")("checkpoint", "checkpoint file", text_value());
  const auto parsed = parse_or_help(opts, argc, argv);
  if (!parsed) return std::nullopt;
  const std::string checkpoint = text(*parsed, "checkpoint").value_or("");
  require_checkpoint(checkpoint, "inspect");
  return checkpoint;
}

std::optional<PictureOptions> parse_picture(const std::string& kind, int argc, char** argv) {
  PictureOptions o;
  o.kind = kind;
  cxxopts::Options opts("vae_ddp " + kind, "Draw the " + kind + " picture of a checkpoint (PNG).");
  opts.add_options()("h,help", "show this help")("checkpoint", "checkpoint file", text_value())(
      "out", "PNG path (default: " + picture_file(kind) + ", the name training gives it)", text_value())(
      "data-dir", "dataset directory (default: the one the checkpoint was trained on)", text_value())(
      "side", "manifold: images per side (default: 20)", text_value())(
      "label", "manifold of a conditional model: the class drawn (default: 0)", text_value())(
      "pairs", "interpolate: pairs of test images, one row each (default: 8)", text_value())(
      "points", "interpolate: decoded points between them (default: 10)", text_value())(
      "steps", "interpolate: the old name of --points, read until the next release", text_value())(
      "verify-md5", "check the dataset's md5 (default: true)", text_value(true))("device", "auto | cpu | cuda",
                                                                                 text_value());
  const auto parsed = parse_or_help(opts, argc, argv);
  if (!parsed) return std::nullopt;
  const auto& r = *parsed;
  o.checkpoint = text(r, "checkpoint").value_or("");
  o.out = text(r, "out").value_or(picture_file(kind));
  o.data_dir = text(r, "data-dir").value_or(o.data_dir);
  if (auto v = text(r, "side")) o.side = parse_int(*v, "--side");
  if (auto v = text(r, "label")) o.label = parse_label(*v);
  if (auto v = text(r, "pairs")) o.pairs = parse_int(*v, "--pairs");
  if (auto v = text(r, "steps")) {
    print_warning(kind + " --steps: now --points (the old name is read until the next release)");
    o.points = parse_int(*v, "--steps");
  }
  if (auto v = text(r, "points")) o.points = parse_int(*v, "--points");
  if (auto v = text(r, "verify-md5")) o.verify_md5 = parse_bool(*v, "--verify-md5");
  if (auto v = text(r, "device")) o.device = parse_choice<DeviceKind>(*v, "--device");
  require_checkpoint(o.checkpoint, kind.c_str());
  // Each picture's own options: one given to another picture is refused, not ignored.
  const std::vector<std::pair<std::string, std::string>> owner = {
      {"side", "manifold"},      {"label", "manifold"},    {"pairs", "interpolate"},
      {"points", "interpolate"}, {"steps", "interpolate"}, {"data-dir", "latent-map and interpolate"}};
  for (const auto& [flag, kinds] : owner) {
    if (r.count(flag) && kinds.find(kind) == std::string::npos) {
      throw UsageError(fmt::format("--{}: not an option of {} (it is one of {})", flag, kind, kinds));
    }
  }
  check_out_file(o.out, "--out");
  for (const auto& [value, flag] :
       std::vector<std::pair<int64_t, std::string>>{{o.side, "side"}, {o.pairs, "pairs"}, {o.points, "points"}}) {
    if (value <= 0) throw UsageError(fmt::format("--{} must be positive, got {}", flag, value));
  }
  return o;
}

int run_picture(const std::string& kind, int argc, char** argv) {
  auto o = parse_picture(kind, argc, argv);
  return o ? picture_command(*o) : kExitOk;
}

// Runs a collective command inside an MPI session (when launched). An error that escapes
// on one rank of several ends the whole job: the others may be waiting in a collective.
int run_in_world(const std::function<int(const World&)>& body) {
  WorldSession session;
  const World& w = session.world();
  init_logging(w.rank);
  try {
    return body(w);
  } catch (const CollectiveFailure& f) {
    return f.code;  // already reported once; every rank leaves through here together
  } catch (const std::exception& e) {
    if (w.size == 1) throw;
    print_error(error_line(e), w.rank);
    abort_job(w, exit_code_for(e));
  }
}

// The subcommands: each parses its own flags with cxxopts (--help prints them) and runs.
struct Command {
  const char* name;
  int (*run)(const std::string& name, int argc, char** argv);
};

const Command kCommands[] = {
    {"train",
     [](const std::string&, int argc, char** argv) {
       auto c = parse_train(argc, argv);
       return c ? run_in_world([&](const World& w) { return train_command(*c, w); }) : kExitOk;
     }},
    {"eval",
     [](const std::string&, int argc, char** argv) {
       auto o = parse_eval(argc, argv);
       return o ? run_in_world([&](const World& w) { return eval_command(*o, w); }) : kExitOk;
     }},
    {"sample",
     [](const std::string&, int argc, char** argv) {
       auto o = parse_sample(argc, argv);
       return o ? sample_command(*o) : kExitOk;
     }},
    {"latent-map", run_picture},
    {"manifold", run_picture},
    {"interpolate", run_picture},
    {"trace",
     [](const std::string&, int argc, char** argv) {
       auto o = parse_trace(argc, argv);
       return o ? trace_command(o->config, o->steps, o->out) : kExitOk;
     }},
    {"export",
     [](const std::string&, int argc, char** argv) {
       auto o = parse_export(argc, argv);
       return o ? export_command(o->checkpoint, o->out, o->data_dir, o->verify_md5) : kExitOk;
     }},
    {"inspect",
     [](const std::string&, int argc, char** argv) {
       auto ckpt = parse_inspect(argc, argv);
       return ckpt ? inspect_command(*ckpt) : kExitOk;
     }},
};

int dispatch(const std::string& command, int argc, char** argv) {
  std::vector<std::string> names;
  for (const auto& c : kCommands) {
    if (command == c.name) return c.run(command, argc, argv);
    names.push_back(c.name);
  }
  const std::string last = names.back();
  names.pop_back();
  throw UsageError(fmt::format("unknown command '{}'; expected {} or {} (see vae_ddp --help)", command,
                               fmt::join(names, ", "), last));
}

// An error found before MPI started (bad flags) hits every rank alike, so the launcher's
// rank 0 reports it; the launcher then ends the others. A rank that is not rank 0 waits
// a moment first and speaks only if it is still alive: its error was its own.
void report_before_mpi(const std::string& line) {
  const int rank = launcher_rank();
  if (rank != 0) std::this_thread::sleep_for(std::chrono::seconds(2));
  print_error(line, rank);
}

}  // namespace

std::string option_table_markdown() {
  std::string table = "| option | default | meaning |\n|---|---|---|\n";
  const Config defaults;
  for (const auto& f : config_fields()) {
    const std::string value = field_to_string(defaults, f);
    table += fmt::format("| `--{}` | {} | {} |\n", f.name, value.empty() ? "(empty)" : "`" + value + "`", f.help);
  }
  return table;
}

int run_cli(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {  // --version anywhere (or the word alone) prints it and nothing else runs
    if (std::string(argv[i]) == "--version" || (argc == 2 && std::string(argv[i]) == "version")) {
      fmt::print("{}", version_text());
      return kExitOk;
    }
  }
  // `vae_ddp eval ...` -> command "eval" and the rest; no command word means train.
  std::string command = "train";
  std::vector<char*> args(argv, argv + argc);
  if (argc > 1 && argv[1][0] != '-') {
    command = argv[1];
    args.erase(args.begin() + 1);
  }
  try {
    return dispatch(command, static_cast<int>(args.size()), args.data());
  } catch (const cxxopts::exceptions::exception& e) {
    report_before_mpi(fmt::format("{} (see vae_ddp {} --help)", e.what(), command));
    return kExitUsage;
  } catch (const std::exception& e) {
    report_before_mpi(error_line(e));
    return exit_code_for(e);
  }
}

}  // namespace vae
