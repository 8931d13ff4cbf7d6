#include "vae_ddp/base/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include "vae_ddp/base/errors.h"

namespace vae {

namespace {

// Each option's one description (Markdown): --help and the README's option table print it.
const Field kFields[] = {
    {"dataset", &Config::dataset,
     "`mnist` or `fashion-mnist` (Debian's `dataset-fashion-mnist`, same format, 10 classes)"},
    {"data-dir", &Config::data_dir,
     "the four IDX files, raw or `.gz`; empty = the dataset's usual place: `data/mnist` (filled by `./launch/setup`) "
     "or `/usr/share/datasets/fashion-mnist`"},
    {"download", &Config::download,
     "fetch missing files from the public MNIST mirrors (needs internet; MNIST only, `--dataset fashion-mnist` with it "
     "is an error)"},
    {"verify-md5", &Config::verify_md5, "check the files against the canonical MNIST md5"},
    {"train-limit", &Config::train_limit, "train on the first N images only (0 = all)"},
    {"binarize", &Config::binarize,
     "`none`: pixels are intensities in [0, 1]; `dynamic`: each pixel is resampled as Bernoulli(intensity) every time "
     "an image is used (the literature's dynamically binarized MNIST, where BCE is a true likelihood); test images get "
     "one fixed binarization per image, from the seed, and `eval` uses it when the checkpoint was trained so"},
    {"out-dir", &Config::out_dir, "where every output goes"},
    {"log-every", &Config::log_every,
     "a progress line every N steps when stdout is not a terminal (on a terminal, a live bar)"},
    {"sample-every", &Config::sample_every, "PNG grids every N epochs (and after the last)"},
    {"checkpoint-every", &Config::checkpoint_every, "keep `epoch_NNN.pt` every N epochs"},
    {"keep-checkpoints", &Config::keep_checkpoints, "keep the newest K `epoch_NNN.pt` (0 = all)"},
    {"resume", &Config::resume,
     "`auto`: continue from `<out-dir>/checkpoints/last.pt` if it exists (or, if it is damaged, the newest good "
     "`epoch_NNN.pt`); `none`: start afresh; or a checkpoint path"},
    {"requeue", &Config::requeue,
     "under Slurm, `scontrol requeue` the job after a stop-signal checkpoint (see Running on a cluster)"},
    {"hidden-dims", &Config::hidden_dims, "encoder widths, comma list (`512,256`); the decoder mirrors them"},
    {"latent-dim", &Config::latent_dim, "size of z"},
    {"activation", &Config::activation, "`relu`, `leaky_relu` (slope 0.01) or `tanh`, after every hidden layer"},
    {"batch-norm", &Config::batch_norm,
     "BatchNorm after each hidden Linear (statistics of the global batch; see Model variants)"},
    {"dropout", &Config::dropout, "dropout probability after each hidden activation, training only"},
    {"conditional", &Config::conditional,
     "conditional VAE: the one-hot label is appended to the encoder's and the decoder's input"},
    {"recon-loss", &Config::recon_loss,
     "`bce` (Bernoulli decoder) or `mse` (squared error of sigmoid(logits), summed over pixels)"},
    {"epochs", &Config::epochs, "train through this epoch"},
    {"batch-size", &Config::batch_size, "the **global** batch: images per optimizer step, all ranks together"},
    {"lr", &Config::lr, "learning rate"},
    {"optimizer", &Config::optimizer, "`adam` or `adamw`"},
    {"weight-decay", &Config::weight_decay,
     "`adam`: L2 term added to the gradient; `adamw`: decoupled decay (as `torch.optim.AdamW`)"},
    {"grad-clip", &Config::grad_clip,
     "clip the global gradient norm (after the all-reduce) to this, as `clip_grad_norm_` (0 = off)"},
    {"seed", &Config::seed, "initialisation, shuffling, noise and evaluation all derive from it"},
    {"beta", &Config::beta, "weight of the KL term"},
    {"kl-schedule", &Config::kl_schedule,
     "`constant`, `linear` (β ramps from 0 over `--kl-warmup-epochs`) or `cyclical` (`--kl-cycles` ramps, each over "
     "`--kl-ramp` of its cycle; Fu et al. 2019)"},
    {"kl-warmup-epochs", &Config::kl_warmup_epochs, "`linear`: epochs over which β ramps from 0"},
    {"kl-cycles", &Config::kl_cycles, "`cyclical`: ramps over the whole run"},
    {"kl-ramp", &Config::kl_ramp, "`cyclical`: fraction of each cycle spent ramping"},
    {"threads", &Config::threads, "intra-op threads (0 = cores / local ranks)"},
    {"world", &Config::world,
     "number of processes (0 = what the launcher started, 1 without one); when given it must match: `--world 4` "
     "without `mpirun -np 4` is an error that says how to launch"},
    {"device", &Config::device,
     "`auto` (CUDA if this libtorch has it and a GPU is visible), `cpu`, `cuda`; rank r uses GPU `local_rank`, "
     "or the one GPU a per-task binding (`CUDA_VISIBLE_DEVICES`) leaves it"},
    {"precision", &Config::precision,
     "`fp32`, `bf16` (CUDA, and CPUs with native bf16: AVX512-BF16 or AMX; refused on other CPUs, where it is no "
     "faster than fp32, and about 50x slower through autograd), `fp16` (CUDA only, with dynamic loss scaling): "
     "autocast around forward and loss (on the CPU fast path, bf16 GEMMs instead); weights and Adam state stay "
     "fp32"},
    {"backend", &Config::backend,
     "gradient all-reduce: `nccl` (CUDA, one GPU per rank) or `mpi` (CPU tensors; CUDA ones through pinned host "
     "memory, so ranks can share a GPU); `auto` picks nccl on CUDA, mpi on CPU"},
    {"comm-timeout", &Config::comm_timeout,
     "seconds a collective may wait before the job is ended (a peer died or hangs)"},
    {"profile", &Config::profile,
     "print per epoch where the step time goes: data, forward, backward, all-reduce, optimizer"},
    {"cpu-fast-path", &Config::cpu_fast_path,
     "CPU fp32: the hand-written step on oneDNN (see Speed); `=false` uses libtorch autograd"},
};

}  // namespace

const std::vector<Field>& config_fields() {
  static const std::vector<Field> fields(std::begin(kFields), std::end(kFields));
  return fields;
}

std::string yaml_key(const Field& f) {
  std::string key = f.name;
  for (char& ch : key) {
    if (ch == '-') ch = '_';
  }
  return key;
}

namespace {

std::string join(const std::vector<int64_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out;
}

}  // namespace

namespace {

// All of `text` read by `read` (std::stoll, std::stod: value and characters used); a
// partial read, an error or a value `ok` rejects throws UsageError: "<where>: expected
// <what>, got '<text>'".
template <typename T, typename Read, typename Ok>
T parse_whole(const std::string& text, const std::string& where, const char* what, Read read, Ok ok) {
  size_t used = 0;
  T v{};
  try {
    v = read(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !ok(v)) {
    throw UsageError(fmt::format("{}: expected {}, got '{}'", where, what, text));
  }
  return v;
}

double parse_double(const std::string& text, const std::string& where) {
  return parse_whole<double>(
      text, where, "a number", [](const std::string& t, size_t* used) { return std::stod(t, used); },
      [](double v) { return std::isfinite(v); });
}

}  // namespace

int64_t parse_int(const std::string& text, const std::string& where) {
  return parse_whole<int64_t>(
      text, where, "an integer", [](const std::string& t, size_t* used) { return std::stoll(t, used); },
      [](int64_t) { return true; });
}

bool parse_bool(const std::string& text, const std::string& where) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  throw UsageError(fmt::format("{}: expected true or false, got '{}'", where, text));
}

namespace {

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& where) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(parse_int(item, where));
  if (out.empty()) throw UsageError(fmt::format("{}: expected a comma list of integers, got '{}'", where, text));
  return out;
}

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

std::string field_to_string(const Config& c, const Field& f) {
  return std::visit(
      Overloaded{[&](std::string Config::*m) { return c.*m; }, [&](int64_t Config::*m) { return std::to_string(c.*m); },
                 [&](double Config::*m) { return fmt::format("{}", c.*m); },
                 [&](bool Config::*m) { return std::string(c.*m ? "true" : "false"); },
                 [&](std::vector<int64_t> Config::*m) { return join(c.*m); },
                 [&](auto choice) { return name_of(c.*choice); }},
      f.member);
}

std::vector<std::string> field_choices(const Field& f) {
  return std::visit(
      [](auto m) {
        using T = std::remove_reference_t<decltype(std::declval<Config&>().*m)>;
        std::vector<std::string> names;
        if constexpr (std::is_enum_v<T>) names.assign(ChoiceNames<T>::names.begin(), ChoiceNames<T>::names.end());
        return names;
      },
      f.member);
}

void field_from_string(Config& c, const Field& f, const std::string& text, const std::string& where) {
  std::visit(Overloaded{[&](std::string Config::*m) { c.*m = text; },
                        [&](int64_t Config::*m) { c.*m = parse_int(text, where); },
                        [&](double Config::*m) { c.*m = parse_double(text, where); },
                        [&](bool Config::*m) { c.*m = parse_bool(text, where); },
                        [&](std::vector<int64_t> Config::*m) { c.*m = parse_int_list(text, where); },
                        [&](auto choice) {
                          using E = std::remove_reference_t<decltype(c.*choice)>;
                          c.*choice = parse_choice<E>(text, where);
                        }},
             f.member);
}

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError(message);
}

template <class T>
void require_positive(T value, const char* flag) {
  require(value > 0, fmt::format("--{} must be positive, got {}", flag, value));
}

template <class T>
void require_non_negative(T value, const char* flag) {
  require(value >= 0, fmt::format("--{} must be >= 0, got {}", flag, value));
}

}  // namespace

namespace {

// Well-formed UTF-8 (what YAML files hold); no overlong forms or surrogates.
bool is_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    const int n = b < 0x80 ? 0 : (b >> 5) == 0x6 ? 1 : (b >> 4) == 0xe ? 2 : (b >> 3) == 0x1e ? 3 : -1;
    if (n < 0 || i + static_cast<size_t>(n) >= s.size()) return false;
    uint32_t cp = n == 0 ? b : b & (0x3f >> n);
    for (int k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c >> 6) != 0x2) return false;
      cp = (cp << 6) | (c & 0x3f);
    }
    const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += static_cast<size_t>(n) + 1;
  }
  return true;
}

}  // namespace

void validate(const Config& c) {
  for (const auto& f : config_fields()) {
    if (auto m = std::get_if<std::string Config::*>(&f.member)) {
      require(is_utf8(c.**m), fmt::format("--{}: not valid UTF-8 text", f.name));
    }
  }
  require(!c.download || c.dataset == DatasetKind::kMnist,
          "--download fetches MNIST only; Fashion-MNIST comes from Debian's dataset-fashion-mnist package");
  require(!c.out_dir.empty(), "--out-dir must not be empty");
  require_non_negative(c.train_limit, "train-limit");
  require_non_negative(c.log_every, "log-every");
  require_non_negative(c.sample_every, "sample-every");
  require_positive(c.checkpoint_every, "checkpoint-every");
  require_non_negative(c.keep_checkpoints, "keep-checkpoints");
  require(!c.resume.empty(), "--resume must be auto, none or a checkpoint path");
  require(!c.hidden_dims.empty(), "--hidden-dims needs at least one width");
  for (int64_t h : c.hidden_dims) {
    require(h > 0, fmt::format("--hidden-dims: every width must be positive, got {}", join(c.hidden_dims)));
  }
  require_positive(c.latent_dim, "latent-dim");
  require(c.dropout >= 0 && c.dropout < 1, fmt::format("--dropout must be in [0, 1), got {}", c.dropout));
  require_non_negative(c.weight_decay, "weight-decay");
  require_non_negative(c.grad_clip, "grad-clip");
  require_positive(c.epochs, "epochs");
  require_positive(c.batch_size, "batch-size");
  require_positive(c.lr, "lr");
  require_non_negative(c.seed, "seed");
  require_non_negative(c.beta, "beta");
  require_non_negative(c.kl_warmup_epochs, "kl-warmup-epochs");
  require_positive(c.kl_cycles, "kl-cycles");
  require(c.kl_ramp > 0 && c.kl_ramp <= 1, fmt::format("--kl-ramp must be in (0, 1], got {}", c.kl_ramp));
  require_non_negative(c.threads, "threads");
  require_non_negative(c.world, "world");
  require_positive(c.comm_timeout, "comm-timeout");
}

void validate_for_device(const Config& c, bool cuda, const CpuInfo& cpu) {
  if (cuda) return;
  require(c.precision != Precision::kFP16,
          "--precision fp16: fp16 autocast needs a CUDA device; on CPU use fp32 (or bf16 on a CPU with native bf16)");
  require(c.precision != Precision::kBF16 || cpu.native_bf16,
          fmt::format("--precision bf16: this CPU ({}) has no native bf16 (AVX512-BF16 or AMX), so bf16 would be "
                      "no faster than fp32 here (emulated), and about 50x slower for a model that trains through "
                      "autograd; use --precision fp32 (the default)",
                      describe_cpu(cpu)));
  require(c.backend != Backend::kNccl, "--backend nccl: NCCL reduces CUDA tensors; on CPU use --backend mpi (or auto)");
}

Config load_yaml_string(const std::string& text, const std::string& origin, Config base) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw UsageError(fmt::format("{}: not valid YAML: {}", origin, e.msg));
  }
  if (root.IsNull()) return base;
  if (!root.IsMap()) throw UsageError(fmt::format("{}: expected a mapping of option: value", origin));
  const auto& fields = config_fields();
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) throw UsageError(fmt::format("{}: every key must be a plain option name", origin));
    const std::string key = kv.first.Scalar();
    auto it = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return yaml_key(f) == key; });
    if (it == fields.end()) throw UsageError(fmt::format("{}: unknown key '{}'", origin, key));
    const std::string where = fmt::format("{}: key '{}'", origin, key);
    const YAML::Node& value = kv.second;
    std::string text;
    if (value.IsScalar()) {
      text = value.Scalar();
    } else if (value.IsSequence()) {
      for (const auto& item : value) {
        if (!item.IsScalar()) throw UsageError(fmt::format("{}: expected a list of numbers", where));
        text += (text.empty() ? "" : ",") + item.Scalar();
      }
    } else {
      throw UsageError(fmt::format("{}: expected a value", where));
    }
    field_from_string(base, *it, text, where);
  }
  return base;
}

Config load_yaml_file(const std::string& path, Config base) {
  std::ifstream in(path);
  if (!in) throw UsageError(fmt::format("--config {}: cannot read the file", path));
  std::stringstream buf;
  buf << in.rdbuf();
  return load_yaml_string(buf.str(), path, std::move(base));
}

std::string to_yaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const auto& f : config_fields()) {
    out << YAML::Key << yaml_key(f) << YAML::Value;
    if (auto m = std::get_if<std::vector<int64_t> Config::*>(&f.member)) {
      out << YAML::Flow << c.**m;
    } else if (!std::holds_alternative<int64_t Config::*>(f.member) &&
               !std::holds_alternative<double Config::*>(f.member) &&
               !std::holds_alternative<bool Config::*>(f.member)) {
      out << YAML::DoubleQuoted << field_to_string(c, f);
    } else {
      out << field_to_string(c, f);
    }
  }
  out << YAML::EndMap;
  if (!out.good()) throw std::runtime_error("cannot write the config as YAML: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

bool operator==(const Config& a, const Config& b) {
  for (const auto& f : config_fields()) {
    if (field_to_string(a, f) != field_to_string(b, f)) return false;
  }
  return true;
}

bool same_architecture(const Config& a, const Config& b) {
  return a.hidden_dims == b.hidden_dims && a.latent_dim == b.latent_dim && a.activation == b.activation &&
         a.batch_norm == b.batch_norm && a.conditional == b.conditional;
}

std::string describe_architecture(const Config& c) {
  std::string text = fmt::format("784-{}-{}", fmt::join(c.hidden_dims, "-"), c.latent_dim);
  if (c.activation != Config{}.activation) text += " " + name_of(c.activation);
  if (c.batch_norm) text += " batchnorm";
  if (c.conditional) text += " conditional";
  return text;
}

std::string resolved_data_dir(const Config& c) {
  if (!c.data_dir.empty()) return c.data_dir;
  return c.dataset == DatasetKind::kFashionMnist ? "/usr/share/datasets/fashion-mnist" : "data/mnist";
}

}  // namespace vae
