// The subcommands (cli.cpp lists them: train, eval, sample, latent-map, manifold, interpolate,
// trace, export, inspect). Each returns an exit code and throws UsageError for user errors.
#pragma once

#include <cstdint>
#include <string>

#include "vae_ddp/base/config.h"
#include "vae_ddp/parallel/world.h"

namespace vae {

// `vae_ddp train`: `config` must have passed validate(). Collective over `world`:
// errors found while starting end every rank with one line (CollectiveFailure).
int train_command(const Config& config, const World& world);

struct EvalOptions {
  std::string checkpoint;                    // required
  std::string data_dir = Config{}.data_dir;  // test split read from here ("" = the checkpoint's dataset)
  int64_t seed = -1;                         // noise seed; -1 = the checkpoint's training seed
  bool json = false;                         // one JSON object on stdout
  int64_t iw_samples = 0;                    // > 0: also the importance-weighted NLL with K samples
  bool verify_md5 = Config{}.verify_md5;
  int64_t threads = Config{}.threads;
  DeviceKind device = Config{}.device;
};
// Collective: ranks evaluate shards of the test set; rank 0 prints.
int eval_command(const EvalOptions& options, const World& world);

struct SampleOptions {
  std::string checkpoint;           // required
  int64_t n = 64;                   // images in the grid
  std::string out = "samples.png";  // PNG path
  int64_t seed = -1;                // z seed; -1 = the checkpoint's training seed
  int64_t label = -1;               // conditional model: draw this class (-1: classes 0..9 in turn)
  DeviceKind device = Config{}.device;
};
int sample_command(const SampleOptions& options);

// `vae_ddp latent-map | manifold | interpolate --checkpoint X [--out F.png]`: the
// pictures training writes (pictures.h), from a checkpoint, on the test split.
struct PictureOptions {
  std::string kind;                       // latent-map | manifold | interpolate
  std::string checkpoint;                 // required
  std::string out;                        // PNG path (picture_file(kind) unless given)
  std::string data_dir;                   // "" = the dataset the checkpoint was trained on
  int64_t side = 20;                      // manifold: images per side
  int64_t label = -1;                     // manifold of a conditional model: the class drawn (-1: not given, 0)
  int64_t pairs = 8;                      // interpolate: rows
  int64_t points = 10;                    // interpolate: decoded points per row
  bool verify_md5 = Config{}.verify_md5;  // the dataset is checked as eval and train check it
  DeviceKind device = Config{}.device;
};
int picture_command(const PictureOptions& options);

// `vae_ddp export --checkpoint X --out FILE.pt`: the model's weights as a state dict that
// Python's torch.load reads (torch::pickle_save), with the parameter names of
// tests/oracle/reference.py's TunedVAE; next to it FILE.check.npy holds the logits of
// decode(mu) for the first 8 test images, to check a Python reimplementation against.
int export_command(const std::string& checkpoint, const std::string& out, const std::string& data_dir,
                   bool verify_md5 = Config{}.verify_md5);

// `vae_ddp inspect --checkpoint X`: loads the checkpoint through the paths a resumed run
// takes (model, Adam state, generator, progress) and prints, as JSON, its progress and the
// SHA-256 of every tensor: two builds (say, libtorch 1.13 and 2.11) that print the same
// JSON for a file have restored it bit for bit.
int inspect_command(const std::string& checkpoint);

// `vae_ddp trace --out DIR [--steps 20] [train options]`: one process runs the first
// `steps` steps of epoch 1 and writes, as NumPy files, the initial weights and each step's
// batch indices and noise, with trace.json holding each step's beta and loss. The PyTorch
// reference (tests/oracle/reference.py parity DIR) replays them for the parity test.
int trace_command(const Config& config, int64_t steps, const std::string& out_dir);

}  // namespace vae
