// The one training configuration. Every option is written once, in config_fields.inc (its
// type, default, flag and meaning): the CLI parser, the YAML reader and writer, --help and
// docs/options.md all take it from there.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "vae_ddp/base/cpu_info.h"
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
enum class StepKind { kAuto, kAutograd, kCpuFast, kGraph };

template <typename E>
struct ChoiceNames;
template <>
struct ChoiceNames<DatasetKind> {
  static constexpr std::array<const char*, 2> names{"mnist", "fashion-mnist"};
};
template <>
struct ChoiceNames<Binarize> {
  static constexpr std::array<const char*, 2> names{"none", "dynamic"};
};
template <>
struct ChoiceNames<Activation> {
  static constexpr std::array<const char*, 3> names{"relu", "leaky_relu", "tanh"};
};
template <>
struct ChoiceNames<ReconLoss> {
  static constexpr std::array<const char*, 2> names{"bce", "mse"};
};
template <>
struct ChoiceNames<Optimizer> {
  static constexpr std::array<const char*, 2> names{"adam", "adamw"};
};
template <>
struct ChoiceNames<KLScheduleKind> {
  static constexpr std::array<const char*, 3> names{"constant", "linear", "cyclical"};
};
template <>
struct ChoiceNames<DeviceKind> {
  static constexpr std::array<const char*, 3> names{"auto", "cpu", "cuda"};
};
template <>
struct ChoiceNames<Precision> {
  static constexpr std::array<const char*, 3> names{"fp32", "bf16", "fp16"};
};
template <>
struct ChoiceNames<Backend> {
  static constexpr std::array<const char*, 3> names{"auto", "nccl", "mpi"};
};
template <>
struct ChoiceNames<StepKind> {
  static constexpr std::array<const char*, 4> names{"auto", "autograd", "cpu-fast", "graph"};
};

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

// The options, each with its default and its meaning, are listed in config_fields.inc.
struct Config {
#define VAE_FIELD(type, member, value, flag, help) type member = value;
#include "vae_ddp/base/config_fields.inc"
#undef VAE_FIELD
};

// One entry per Config field, in declaration order. `name` is the flag spelling
// (--batch-size); YAML keys use underscores (batch_size).
using FieldRef = std::variant<std::string Config::*, int64_t Config::*, double Config::*, bool Config::*,
                              std::vector<int64_t> Config::*, DatasetKind Config::*, Binarize Config::*,
                              Activation Config::*, ReconLoss Config::*, Optimizer Config::*, KLScheduleKind Config::*,
                              DeviceKind Config::*, Precision Config::*, Backend Config::*, StepKind Config::*>;
struct Field {
  const char* name;
  FieldRef member;
  // What the option means, in Markdown (`literals` in backticks): docs/options.md shows it
  // as written, --help without the marks.
  const char* help;
};
const std::vector<Field>& config_fields();

// The YAML key of a field: its flag name with '-' replaced by '_'.
std::string yaml_key(const Field& f);

// The name among `names` nearest to a misspelled `word` (edit distance at most 2, and less
// than half its length), for "did you mean"; "" when none is that near.
std::string closest_name(const std::string& word, const std::vector<std::string>& names);
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
// The rules that depend on the device type `auto` resolved to and on the CPU: fp16 and NCCL
// need CUDA; bf16 on the CPU needs native bf16 (cpu_info.h).
void validate_for_device(const Config& c, bool cuda, const CpuInfo& cpu);

// Options renamed or replaced, read until the next release: each sets its successor in `c`
// from the old value (`where` names the flag or file:key in errors).
struct OldOption {
  const char* name;  // the old flag spelling (--cpu-fast-path); its YAML key has '_'
  const char* now;   // what to write instead, for the warning
  void (*apply)(Config& c, const std::string& text, const std::string& where);
};
const std::vector<OldOption>& old_options();

// Reads a YAML mapping of field keys over `base`. Throws UsageError naming the file
// for a missing/unreadable file, bad YAML, an unknown key or a value of the wrong type.
// An old key (old_options()) is read into its successor, with a warning on stderr when
// `warn_old_keys` (a checkpoint's own config is read without one).
Config load_yaml_file(const std::string& path, Config base, bool warn_old_keys = true);
Config load_yaml_string(const std::string& text, const std::string& origin, Config base, bool warn_old_keys = true);
// All fields, one `key: value` line each; load_yaml_string(to_yaml(c)) == c.
std::string to_yaml(const Config& c);

bool operator==(const Config& a, const Config& b);

}  // namespace vae
