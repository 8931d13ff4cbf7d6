// The one training configuration. Every default is written here, once: the CLI
// parser, the YAML reader and writer and the help text all take it from Config{}.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "vae_ddp/base/errors.h"

namespace vae {

// The choice options, parsed once (flag or YAML text) into these enums. ChoiceNames<E>
// holds the spellings users write, in enumerator order.
enum class DatasetKind { kMnist, kFashionMnist };
enum class Binarize { kNone, kDynamic };
enum class Activation { kRelu, kLeakyRelu, kTanh };
enum class ReconLoss { kBce, kMse };
enum class Optimizer { kAdam, kAdamW };
enum class KLScheduleKind { kConstant, kLinear, kCyclical };
enum class DeviceKind { kAuto, kCpu, kCuda };
enum class Precision { kFP32, kBF16, kFP16 };
enum class Backend { kAuto, kNccl, kMpi };

template <typename E>
struct ChoiceNames;
template <> struct ChoiceNames<DatasetKind> { static constexpr std::array<const char*, 2> names{"mnist", "fashion-mnist"}; };
template <> struct ChoiceNames<Binarize> { static constexpr std::array<const char*, 2> names{"none", "dynamic"}; };
template <> struct ChoiceNames<Activation> { static constexpr std::array<const char*, 3> names{"relu", "leaky_relu", "tanh"}; };
template <> struct ChoiceNames<ReconLoss> { static constexpr std::array<const char*, 2> names{"bce", "mse"}; };
template <> struct ChoiceNames<Optimizer> { static constexpr std::array<const char*, 2> names{"adam", "adamw"}; };
template <> struct ChoiceNames<KLScheduleKind> {
  static constexpr std::array<const char*, 3> names{"constant", "linear", "cyclical"};
};
template <> struct ChoiceNames<DeviceKind> { static constexpr std::array<const char*, 3> names{"auto", "cpu", "cuda"}; };
template <> struct ChoiceNames<Precision> { static constexpr std::array<const char*, 3> names{"fp32", "bf16", "fp16"}; };
template <> struct ChoiceNames<Backend> { static constexpr std::array<const char*, 3> names{"auto", "nccl", "mpi"}; };

// How users write `e`: name_of(Precision::kBF16) == "bf16".
template <typename E>
std::string name_of(E e) {
  return ChoiceNames<E>::names[static_cast<size_t>(e)];
}

// The choice `text` spells; throws UsageError "<where> must be one of a, b, got 'text'".
template <typename E>
E parse_choice(const std::string& text, const std::string& where) {
  std::string list;
  for (size_t i = 0; i < ChoiceNames<E>::names.size(); ++i) {
    if (text == ChoiceNames<E>::names[i]) return static_cast<E>(i);
    list += (i ? ", " : "") + std::string(ChoiceNames<E>::names[i]);
  }
  throw UsageError(where + " must be one of " + list + ", got '" + text + "'");
}

struct Config {
  // --- data ---
  DatasetKind dataset = DatasetKind::kMnist;  // mnist | fashion-mnist (same format, 10 classes)
  std::string data_dir = "";              // the four IDX files, raw or .gz ("" = the dataset's usual place)
  bool download = false;                  // fetch missing MNIST files from the public mirrors
  bool verify_md5 = true;                 // check the dataset's canonical files against their md5
  int64_t train_limit = 0;                // use only the first N training images (0 = all)
  Binarize binarize = Binarize::kNone;    // none | dynamic: pixels ~ Bernoulli(intensity) each use
  // --- outputs ---
  std::string out_dir = "runs/mnist-vae"; // config.yaml, metrics.csv, PNGs, checkpoints/
  int64_t log_every = 100;                // progress line every N steps (0 = none)
  int64_t sample_every = 1;               // sample and reconstruction PNGs every N epochs (0 = none)
  int64_t checkpoint_every = 1;           // epoch_NNN.pt every N epochs (last.pt every epoch)
  int64_t keep_checkpoints = 3;           // keep the newest K epoch_NNN.pt (0 = keep all)
  std::string resume = "auto";            // auto: continue from last.pt if present | none | PATH
  bool requeue = true;                    // under Slurm, requeue the job after a stop-signal checkpoint
  // --- model ---
  std::vector<int64_t> hidden_dims = {400};  // encoder widths; the decoder mirrors them
  int64_t latent_dim = 20;                // size of z
  Activation activation = Activation::kRelu;  // relu | leaky_relu | tanh, after every hidden layer
  bool batch_norm = false;                // BatchNorm after hidden Linears, statistics of the global batch
  double dropout = 0;                     // drop probability after hidden activations (training only)
  bool conditional = false;               // condition encoder and decoder on the one-hot label
  ReconLoss recon_loss = ReconLoss::kBce; // bce (Bernoulli decoder) | mse (squared error of the means)
  // --- optimisation ---
  int64_t epochs = 10;                    // train until this epoch (1-based, inclusive)
  int64_t batch_size = 128;               // global batch: images per optimizer step, all ranks together
  double lr = 1e-3;                       // learning rate
  Optimizer optimizer = Optimizer::kAdam; // adam | adamw
  double weight_decay = 0;                // adam: L2 added to the gradient; adamw: decoupled decay
  double grad_clip = 0;                   // clip the global gradient norm to this (0 = off)
  int64_t seed = 1;                       // init, shuffling, noise and evaluation all derive from it
  // --- KL weight ---
  double beta = 1.0;                      // weight of the KL term (after warm-up)
  KLScheduleKind kl_schedule = KLScheduleKind::kConstant;  // constant | linear | cyclical
  double kl_warmup_epochs = 5;            // linear: epochs to ramp beta from 0
  int64_t kl_cycles = 4;                  // cyclical: ramps over the whole run
  double kl_ramp = 0.5;                   // cyclical: fraction of each cycle spent ramping
  // --- execution ---
  int64_t threads = 0;                    // intra-op threads (0 = cores / local ranks)
  int64_t world = 0;                      // processes; 0 = as the launcher says (1 without one)
  DeviceKind device = DeviceKind::kAuto;  // auto | cpu | cuda (rank r uses GPU local_rank)
  Precision precision = Precision::kFP32; // fp32 | bf16 | fp16 (CUDA only): autocast; weights stay fp32
  Backend backend = Backend::kAuto;       // auto | nccl | mpi: gradient all-reduce
  int64_t comm_timeout = 600;             // seconds a collective may take before the job is ended
  bool profile = false;                   // print where each epoch's step time goes
  bool cpu_fast_path = true;              // CPU fp32: hand-written step on oneDNN (false: autograd)
};

// One entry per Config field, in declaration order. `name` is the flag spelling
// (--batch-size); YAML keys use underscores (batch_size).
using FieldRef = std::variant<std::string Config::*, int64_t Config::*, double Config::*, bool Config::*,
                              std::vector<int64_t> Config::*, DatasetKind Config::*, Binarize Config::*,
                              Activation Config::*, ReconLoss Config::*, Optimizer Config::*,
                              KLScheduleKind Config::*, DeviceKind Config::*, Precision Config::*,
                              Backend Config::*>;
struct Field {
  const char* name;
  FieldRef member;
  const char* help;
};
const std::vector<Field>& config_fields();

// The YAML key of a field: its flag name with '-' replaced by '_'.
std::string yaml_key(const Field& f);
// The spellings a choice field takes, in order ("relu", "leaky_relu", "tanh"); empty for
// the other fields.
std::vector<std::string> field_choices(const Field& f);
// A field's value as text, as written in YAML and in help text ("400,200" for lists).
std::string field_to_string(const Config& c, const Field& f);
// Parses `text` into the field; throws UsageError naming `where` (a flag or file:key).
void field_from_string(Config& c, const Field& f, const std::string& text, const std::string& where);

// Value parsers shared by the CLI and YAML: throw UsageError naming `where`.
int64_t parse_int(const std::string& text, const std::string& where);
bool parse_bool(const std::string& text, const std::string& where);

// Checks every rule on its own; throws UsageError naming the flag and value.
void validate(const Config& c);
// The rules that depend on the device type `auto` resolved to (fp16 and NCCL need CUDA).
void validate_for_device(const Config& c, bool cuda);

// Reads a YAML mapping of field keys over `base`. Throws UsageError naming the file
// for a missing/unreadable file, bad YAML, an unknown key or a value of the wrong type.
Config load_yaml_file(const std::string& path, Config base);
Config load_yaml_string(const std::string& text, const std::string& origin, Config base);
// All fields, one `key: value` line each; load_yaml_string(to_yaml(c)) == c.
std::string to_yaml(const Config& c);

bool operator==(const Config& a, const Config& b);
// True when two configs build models with the same parameter shapes.
bool same_architecture(const Config& a, const Config& b);
std::string describe_architecture(const Config& c);  // "784-400-20", "784-200-200-50 tanh"
// Where the dataset's files are read from: --data-dir, or when it is empty the dataset's
// usual place (data/mnist, which ./launch/setup fills; Debian's dataset-fashion-mnist).
std::string resolved_data_dir(const Config& c);

}  // namespace vae
