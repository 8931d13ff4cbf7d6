#include "vae_ddp/base/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "vae_ddp/base/errors.h"

namespace vae {

namespace {

const Field kFields[] = {
#define VAE_FIELD(type, member, value, flag, help) {flag, &Config::member, help},
#include "vae_ddp/base/config_fields.inc"
#undef VAE_FIELD
};

}  // namespace

const std::vector<Field>& config_fields() {
  static const std::vector<Field> fields(std::begin(kFields), std::end(kFields));
  return fields;
}

namespace {

std::string underscored(std::string name) {
  for (char& ch : name) {
    if (ch == '-') ch = '_';
  }
  return name;
}

}  // namespace

std::string yaml_key(const Field& f) { return underscored(f.name); }

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
                      "no faster than fp32 here (emulated), and far slower for a model that trains through autograd; "
                      "use --precision fp32 (the default)",
                      describe_cpu(cpu)));
  require(c.backend != Backend::kNccl, "--backend nccl: NCCL reduces CUDA tensors; on CPU use --backend mpi (or auto)");
}

const std::vector<OldOption>& old_options() {
  static const std::vector<OldOption> old = {
      {"cpu-fast-path", "--step (`--cpu-fast-path=false` is `--step autograd`, `true` is `--step auto`)",
       [](Config& c, const std::string& text, const std::string& where) {
         c.step = parse_bool(text, where) ? StepKind::kAuto : StepKind::kAutograd;
       }},
  };
  return old;
}

std::string closest_name(const std::string& word, const std::vector<std::string>& names) {
  std::string best;
  size_t best_distance = 3;
  for (const auto& name : names) {
    // Levenshtein distance, one row at a time.
    std::vector<size_t> row(name.size() + 1);
    for (size_t j = 0; j <= name.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= name.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (word[i - 1] == name[j - 1] ? 0 : 1)});
        diagonal = up;
      }
    }
    if (row[name.size()] < best_distance && 2 * row[name.size()] < word.size()) {
      best_distance = row[name.size()];
      best = name;
    }
  }
  return best;
}

Config load_yaml_string(const std::string& text, const std::string& origin, Config base, bool warn_old_keys) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) throw UsageError(fmt::format("{}: not valid YAML: {}", origin, e.msg));
    throw UsageError(
        fmt::format("{}: line {}, column {}: not valid YAML: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  if (root.IsNull()) return base;
  if (!root.IsMap()) throw UsageError(fmt::format("{}: expected a mapping of option: value", origin));
  const auto& fields = config_fields();
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) throw UsageError(fmt::format("{}: every key must be a plain option name", origin));
    const std::string key = kv.first.Scalar();
    auto it = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return yaml_key(f) == key; });
    const auto& old = old_options();
    auto was = std::find_if(old.begin(), old.end(), [&](const OldOption& o) { return underscored(o.name) == key; });
    if (it == fields.end() && was == old.end()) {
      std::vector<std::string> keys;
      for (const auto& f : fields) keys.push_back(yaml_key(f));
      const std::string near = closest_name(key, keys);
      throw UsageError(fmt::format("{}: line {}: unknown key '{}'{}", origin, kv.first.Mark().line + 1, key,
                                   near.empty() ? "" : fmt::format("; did you mean '{}'?", near)));
    }
    const std::string where = fmt::format("{}: key '{}'", origin, key);
    const YAML::Node& value = kv.second;
    if (it == fields.end()) {
      if (!value.IsScalar()) throw UsageError(fmt::format("{}: expected a value", where));
      if (warn_old_keys) {
        print_warning(fmt::format("{}: now {}; the old key is read until the next release", where, was->now));
      }
      was->apply(base, value.Scalar(), where);
      continue;
    }
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

Config load_yaml_file(const std::string& path, Config base, bool warn_old_keys) {
  std::ifstream in(path);
  if (!in) throw UsageError(fmt::format("--config {}: cannot read the file", path));
  std::stringstream buf;
  buf << in.rdbuf();
  return load_yaml_string(buf.str(), path, std::move(base), warn_old_keys);
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

}  // namespace vae
