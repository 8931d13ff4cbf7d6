#include "vae_ddp/app/commands.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <ATen/CPUGeneratorImpl.h>
#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/version.h>

#include "vae_ddp/app/runtime.h"
#include "vae_ddp/base/cpu_info.h"
#include "vae_ddp/base/digest.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/base/rng.h"
#include "vae_ddp/base/stop_signal.h"
#include "vae_ddp/data/download.h"
#include "vae_ddp/data/mnist.h"
#include "vae_ddp/io/files.h"
#include "vae_ddp/io/json.h"
#include "vae_ddp/io/metrics.h"
#include "vae_ddp/io/npy.h"
#include "vae_ddp/io/progress.h"
#include "vae_ddp/parallel/comm.h"
#include "vae_ddp/train/checkpoint.h"
#include "vae_ddp/train/evaluate.h"
#include "vae_ddp/train/trainer.h"
#include "vae_ddp/viz/images.h"
#include "vae_ddp/viz/pictures.h"

namespace vae {

namespace {

// --world, when given, must match what the launcher started.
void check_world(const Config& c, const World& w) {
  if (c.world == 0 || c.world == w.size) return;
  if (!w.launched) {
    throw UsageError(
        fmt::format("--world {}: started without an MPI launcher; run `mpirun -np {} vae_ddp ...` "
                    "(or ./launch/train --np {} ...), or pass --world 1",
                    c.world, c.world, c.world));
  }
  throw UsageError(fmt::format("--world {}: the launcher started {} process(es); pass --world {} or leave it out",
                               c.world, w.size, w.size));
}

// Every rank must train with the same options (a flag given to one rank only would
// silently break the replicas). Collective.
void check_same_config(const World& w, const Config& c) {
  const auto hash = static_cast<int64_t>(std::hash<std::string>{}(to_yaml(c)));
  const auto [lo, hi] = allreduce_min_max(w, hash);
  run_collectively(w, [lo = lo, hi = hi] {
    if (lo != hi) {
      throw UsageError("ranks disagree on the configuration: every rank must get the same flags and --config file");
    }
  });
}

void log_startup(const Config& c, const World& w, torch::Device device, int threads, const Communicator& comm,
                 const Trainer& trainer, int64_t parameters, int64_t train_images, int64_t test_images) {
  spdlog::info("vae_ddp · libtorch {} · {} rank(s) on {} · device {} · {} thread(s)/rank · BLAS {} · backend {}{}",
               TORCH_VERSION, w.size, describe_nodes(w), device.str(), threads, blas_name(), comm.name(),
               comm.name() == "nccl" ? " " + nccl_version() : "");
  spdlog::info("model {} ({} parameters) · {} · data {} ({} train, {} test images) · {} steps/epoch of {} images",
               describe_architecture(c), parameters, name_of(c.precision),
               name_of(c.dataset) + " " + resolved_data_dir(c), train_images, test_images, trainer.steps_per_epoch(),
               c.batch_size);
  if (device.is_cpu()) spdlog::info("cpu: {}", describe_cpu(cpu_info()));
  spdlog::info("step: {}", trainer.step_description());
  for (const auto& f : config_fields()) spdlog::info("  {:<18} {}", f.name, field_to_string(c, f));
}

// --label D (D >= 0: given) needs a conditional model.
void check_label(int64_t label, const Checkpoint& ckpt) {
  if (label >= 0 && !ckpt.config().conditional) {
    throw UsageError(
        fmt::format("--label {}: {} is not a conditional model (train with --conditional)", label, ckpt.path()));
  }
}

// What the "wrote" line of a command adds when its output file was already there: nothing the
// user had is replaced without a word.
std::string replacing_note(const std::string& path) {
  return std::filesystem::exists(path) ? "; replaced the file that was there" : "";
}

// The data settings of a checkpoint's run, with --data-dir (when given) and --verify-md5
// from the command line: eval and export read the dataset the model was trained on.
Config data_config(Config trained, const std::string& data_dir, bool verify_md5) {
  if (!data_dir.empty()) trained.data_dir = data_dir;
  trained.verify_md5 = verify_md5;
  return trained;
}

int64_t count_parameters(VAE& model) {
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  return n;
}

}  // namespace

namespace {

// What every rank knows once the start-up checks pass: its device and threads, and the
// checkpoint to resume from (rank 0 found and read it; every rank gets its bytes).
struct TrainStart {
  torch::Device device = torch::kCPU;
  int threads = 0;
  std::string ckpt_path, ckpt_bytes;  // path "": start afresh
  std::string moved_aside;            // rank 0, --resume none: where the previous run went
};

// Local checks and reads first; a failure on any rank ends every rank with one line.
TrainStart prepare_train(const Config& c, const World& w) {
  TrainStart s;
  run_collectively(w, [&] {
    check_world(c, w);
    s.device = resolve_device(c.device, w.local_rank, c.backend);
    s.threads = configure_threads(c.threads, w.local_size);
    if (w.rank != 0) return;   // rank 0 owns the output directory and the checkpoints
    check_out_dir(c.out_dir);  // created once the run can start (prepare_out_dir)
    ResumeSource src = find_resume(c);
    s.ckpt_path = std::move(src.path);
    s.ckpt_bytes = std::move(src.bytes);
    if (!src.note.empty()) spdlog::warn("{}", src.note);
    if (c.download) download_mnist(resolved_data_dir(c));
  });
  check_same_config(w, c);
  broadcast_bytes(w, s.ckpt_path);
  broadcast_bytes(w, s.ckpt_bytes);
  return s;
}

// config.yaml: the settings a fresh run starts with. A resumed run keeps the file and adds a
// comment for each setting it changed, with the epoch it took effect from, so that what each
// epoch ran with can be read off it (the checkpoints hold the latest settings).
void write_run_config(const Config& c, const Checkpoint* ckpt, const std::vector<SettingChange>& changes) {
  const std::string path = c.out_dir + "/config.yaml";
  if (!ckpt || !std::filesystem::exists(path)) {
    write_file_atomic(path, to_yaml(ckpt ? ckpt->config() : c));
    if (!ckpt) return;
  }
  if (changes.empty()) return;
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!text.empty() && text.back() != '\n') text += '\n';
  const auto& p = ckpt->progress();
  text += fmt::format(
      "# resumed from {} after epoch {}{} (global step {}), with changed settings:\n", ckpt->path(), p.epoch,
      p.step_in_epoch ? fmt::format(" and {} steps of epoch {}", p.step_in_epoch, p.epoch + 1) : "", p.global_step);
  for (const auto& ch : changes) text += fmt::format("#   {}: {}  (was {})\n", ch.name, ch.now, ch.was);
  write_file_atomic(path, text);
}

// Rank 0: config.yaml, the start-up table, and what the run starts from.
void announce_train(const Config& c, const World& w, const TrainStart& s, const Communicator& comm, Trainer& trainer,
                    const Checkpoint* ckpt, int64_t train_images, int64_t test_images) {
  const auto changes = ckpt ? changed_settings(ckpt->config(), c) : std::vector<SettingChange>{};
  write_run_config(c, ckpt, changes);
  log_startup(c, w, s.device, s.threads, comm, trainer, count_parameters(trainer.model()), train_images, test_images);
  if (c.batch_size > train_images) {
    spdlog::warn(
        "warning: --batch-size {} is larger than the training set ({} images): each epoch is one step of {} images",
        c.batch_size, train_images, train_images);
  }
  if (!s.moved_aside.empty()) {
    spdlog::warn("warning: --resume none: {} held a previous run; moved it, whole, to {}", c.out_dir, s.moved_aside);
  }
  if (ckpt) {
    const auto& p = ckpt->progress();
    spdlog::info("resuming from {} (epoch {} done{}, global step {})", ckpt->path(), p.epoch,
                 p.step_in_epoch ? fmt::format(", epoch {} stopped after step {}", p.epoch + 1, p.step_in_epoch) : "",
                 p.global_step);
    // What differs from the run that wrote the checkpoint: allowed, said, and kept in config.yaml.
    for (const auto& ch : changes) {
      if (ch.name == "epochs") {  // the usual change: more epochs
        spdlog::info("resuming with --epochs {} (the checkpoint's run had {})", ch.now, ch.was);
        continue;
      }
      spdlog::warn(
          "warning: resuming with --{} {} (the checkpoint's run had {}): from epoch {}{} on; noted in {}/config.yaml",
          ch.name, ch.now, ch.was, p.epoch + 1, p.step_in_epoch ? fmt::format(" step {}", p.step_in_epoch + 1) : "",
          c.out_dir);
    }
  }
}

// Rank 0, at the end of a run: what it reached, where each output is, what to run next.
void summarize_run(const Config& c, int64_t first_epoch, double seconds) {
  namespace fs = std::filesystem;
  std::vector<EpochMetrics> rows;
  try {
    rows = read_metrics(c.out_dir + "/metrics.csv");
  } catch (const std::exception&) {
  }
  if (!rows.empty()) {
    const auto& last = rows.back();
    const auto best = *std::min_element(rows.begin(), rows.end(),
                                        [](const auto& a, const auto& b) { return a.test_loss < b.test_loss; });
    spdlog::info(
        "==> done: epoch {} of {} ({} this run, {}): train loss {:.4f}, test loss {:.4f}; best test loss {:.4f} "
        "at epoch {}",
        last.epoch, c.epochs, std::max<int64_t>(0, last.epoch - first_epoch), clock_text(seconds), last.train_loss,
        last.test_loss, best.test_loss, best.epoch);
  }
  std::vector<std::string> outputs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(c.out_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory()) {
      outputs.push_back(name);
      continue;
    }
    int64_t files = 0;
    for (const auto& f : fs::directory_iterator(e.path(), ec)) files += f.is_regular_file() ? 1 : 0;
    outputs.push_back(fmt::format("{}/ ({} file{})", name, files, files == 1 ? "" : "s"));
  }
  std::sort(outputs.begin(), outputs.end());
  spdlog::info("outputs in {}: {}", c.out_dir, fmt::join(outputs, ", "));
  const std::string last_pt = c.out_dir + "/checkpoints/last.pt";
  if (fs::exists(last_pt)) {
    spdlog::info("next: vae_ddp eval --checkpoint {}", last_pt);
    spdlog::info("      vae_ddp sample --checkpoint {} --out {}/samples.png", last_pt, c.out_dir);
  }
}

}  // namespace

int train_command(const Config& c, const World& w) {
  const auto t0 = std::chrono::steady_clock::now();
  TrainStart start = prepare_train(c, w);
  std::unique_ptr<Checkpoint> ckpt;
  Dataset train, test;
  run_collectively(w, [&] {
    if (!start.ckpt_path.empty()) {
      ckpt = std::make_unique<Checkpoint>(start.ckpt_path, start.ckpt_bytes, start.device);
      check_resumable(*ckpt, c);  // before the data is read: fail fast
      check_unchanged_on_resume(*ckpt, c);
    }
    train = load_dataset(c, Split::kTrain);
    test = load_dataset(c, Split::kTest);
    if (w.rank != 0) return;
    if (c.resume == "none") start.moved_aside = move_previous_run_aside(c.out_dir);
    prepare_out_dir(c.out_dir);
  });
  start.ckpt_bytes.clear();
  const int64_t train_images = train.size(), test_images = test.size();

  auto comm = make_communicator(w, c.backend, start.device, std::chrono::seconds(c.comm_timeout));
  Trainer trainer(c, std::move(train), std::move(test), start.device, *comm);
  if (ckpt) trainer.resume_from(*ckpt);
  if (w.rank == 0) announce_train(c, w, start, *comm, trainer, ckpt.get(), train_images, test_images);
  install_stop_handlers();
  if (trainer.run() == RunEnd::kStopped) {
    if (w.rank == 0) {
      spdlog::info("stopped by {}; {}", stop_signal_name()[0] ? stop_signal_name() : "a stop signal on another rank",
                   c.requeue ? requeue_slurm_job() : std::string("--requeue=false: not requeued"));
    }
    return kExitOk;
  }
  if (w.rank == 0) {
    summarize_run(c, ckpt ? ckpt->progress().epoch : 0,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return kExitOk;
}

int eval_command(const EvalOptions& o, const World& w) {
  torch::Device device = torch::kCPU;
  std::string bytes;
  run_collectively(w, [&] {
    device = resolve_device(o.device, w.local_rank);
    configure_threads(o.threads, w.local_size);
    if (w.rank == 0) bytes = read_checkpoint_bytes(o.checkpoint);
  });
  broadcast_bytes(w, bytes);
  std::unique_ptr<Checkpoint> ckpt;
  VAE model{nullptr};
  Dataset test;
  run_collectively(w, [&] {
    ckpt = std::make_unique<Checkpoint>(o.checkpoint, bytes, device);
    model = open_model(*ckpt, device);
    if (o.iw_samples > 0 && ckpt->config().recon_loss == ReconLoss::kMse) {
      throw UsageError(
          fmt::format("--iw-samples: {} was trained with --recon-loss mse, which is not a likelihood; "
                      "the importance-weighted NLL needs a Bernoulli decoder (--recon-loss bce)",
                      o.checkpoint));
    }
    test = load_dataset(data_config(ckpt->config(), o.data_dir, o.verify_md5), Split::kTest);
  });
  auto comm = make_communicator(w, Backend::kAuto, device, std::chrono::seconds(Config{}.comm_timeout));
  const int64_t seed = o.seed >= 0 ? o.seed : ckpt->config().seed;
  const bool binarize = ckpt->config().binarize == Binarize::kDynamic;  // evaluate as the model was trained
  const EvalResult r = evaluate(model, test, seed, device, *comm, binarize);
  // K = 5000 takes minutes: rank 0 shows how far it is, on stderr (stdout holds the result).
  const auto t_iw = std::chrono::steady_clock::now();
  int last_tenth = 0;
  const EvalProgress show = [&](int64_t done, int64_t total) {
    if (w.rank != 0 || total == 0) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_iw).count();
    const std::string line = fmt::format("importance-weighted NLL (K = {}): {}/{} images ({:.0f}%), {} elapsed, ETA {}",
                                         o.iw_samples, done, total, 100.0 * done / total, clock_text(s),
                                         clock_text(s * static_cast<double>(total - done) / static_cast<double>(done)));
    if (isatty(STDERR_FILENO) == 1) {
      fmt::print(stderr, "\r\033[K{}{}", line, done == total ? "\n" : "");
    } else if (const int tenth = static_cast<int>(10 * done / total); tenth > last_tenth) {
      last_tenth = tenth;  // not a terminal: a line at each tenth
      fmt::print(stderr, "{}\n", line);
    }
    std::fflush(stderr);
  };
  const double iw =
      o.iw_samples > 0 ? importance_weighted_nll(model, test, seed, o.iw_samples, device, *comm, binarize, show) : 0.0;
  if (w.rank != 0) return kExitOk;
  const std::string recon = name_of(ckpt->config().recon_loss);
  if (o.json) {
    JsonObject json;
    json.add("checkpoint", o.checkpoint).add("epoch", ckpt->progress().epoch).add("seed", seed);
    json.add("images", r.images).add("test_loss", r.loss).add("test_" + recon, r.bce).add("test_kld", r.kld);
    if (o.iw_samples > 0) json.add("iw_samples", o.iw_samples).add("iw_nll", iw);
    fmt::print("{}\n", json.str());
  } else {
    // MSE is a squared error, not a log-likelihood: its loss is not in nats.
    fmt::print("{} (epoch {}): test loss {:.4f} {} ({} {:.4f}, kld {:.4f}) over {} images, seed {}\n", o.checkpoint,
               ckpt->progress().epoch, r.loss, recon == "bce" ? "nats/image" : "per image (squared error + KL)", recon,
               r.bce, r.kld, r.images, seed);
    if (o.iw_samples > 0) fmt::print("importance-weighted NLL (K = {}): {:.4f} nats/image\n", o.iw_samples, iw);
  }
  std::fflush(stdout);
  return kExitOk;
}

int picture_command(const PictureOptions& o) {
  const std::string replaced = replacing_note(o.out);
  const torch::Device device = resolve_device(o.device);
  Checkpoint ckpt(o.checkpoint, device);
  VAE model = open_model(ckpt, device);
  const Config& trained = ckpt.config();
  if (o.kind == "manifold") {
    check_label(o.label, ckpt);
    write_manifold(model, o.out, o.side, std::max<int64_t>(o.label, 0));
  } else {
    const Dataset test = load_dataset(data_config(trained, o.data_dir, o.verify_md5), Split::kTest);
    if (o.kind == "latent-map") {
      write_latent_map(model, test, class_names(trained.dataset), o.out);
    } else {
      write_interpolations(model, test, o.out, o.pairs, o.points);
    }
  }
  fmt::print("wrote {} ({} of {}, epoch {}){}\n", o.out, o.kind, o.checkpoint, ckpt.progress().epoch, replaced);
  return kExitOk;
}

int sample_command(const SampleOptions& o) {
  const std::string replaced = replacing_note(o.out);
  const torch::Device device = resolve_device(o.device);
  Checkpoint ckpt(o.checkpoint, device);
  VAE model = open_model(ckpt, device);
  const int64_t seed = o.seed >= 0 ? o.seed : ckpt.config().seed;
  torch::NoGradGuard no_grad;
  auto gen = make_generator(seed, Stream::kSample);
  auto z = torch::randn({o.n, model->latent_dim()}, gen, torch::kFloat32).to(device);  // [n, latent]
  check_label(o.label, ckpt);
  const ForwardExtras labels =
      o.label >= 0 ? ForwardExtras{torch::full({o.n}, o.label, torch::kInt64), {}} : cycling_labels(o.n);
  auto images = torch::sigmoid(model->decode(z, labels)).view({-1, kImageSide, kImageSide});
  const auto cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(o.n))));
  write_grid_png(o.out, images, cols);
  fmt::print("wrote {} ({} samples){}\n", o.out, o.n, replaced);
  return kExitOk;
}

}  // namespace vae

namespace vae {

int trace_command(const Config& c, int64_t steps, const std::string& out_dir) {
  const torch::Device device = resolve_device(c.device);
  configure_threads(c.threads, /*local_ranks=*/1);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw UsageError(fmt::format("--out {}: cannot create it: {}", out_dir, ec.message()));
  Dataset train = load_dataset(c, Split::kTrain);
  Dataset test = load_dataset(c, Split::kTest);
  auto comm = make_local_communicator(World{});
  Trainer trainer(c, std::move(train), std::move(test), device, *comm);
  for (const auto& p : trainer.model()->named_parameters()) {
    write_npy(fmt::format("{}/init.{}.npy", out_dir, p.key()), p.value());
  }
  const auto records = trainer.trace(steps);
  std::vector<JsonObject> steps_json;
  for (size_t k = 0; k < records.size(); ++k) {
    write_npy(fmt::format("{}/step{:03d}.idx.npy", out_dir, k), records[k].indices);
    write_npy(fmt::format("{}/step{:03d}.eps.npy", out_dir, k), records[k].eps);
    steps_json.push_back(JsonObject().add("beta", records[k].beta).add("loss", records[k].loss));
  }
  JsonObject json;
  json.add("data_dir", std::filesystem::absolute(resolved_data_dir(c)).string());
  json.add("config", JsonObject().add("hidden", c.hidden_dims).add("latent", c.latent_dim).add("lr", c.lr));
  json.add("steps", steps_json);
  write_file_atomic(out_dir + "/trace.json", json.str() + "\n");
  fmt::print("wrote {} steps to {}\n", records.size(), out_dir);
  return kExitOk;
}

}  // namespace vae

namespace vae {

namespace {

// What torch::pickle_save writes, minus its type tags: a plain dict of tensors in torch.save's
// zip format. pickle_save tags typed dicts with torch.jit._pickle.restore_type_tag, which
// torch.load(weights_only=True), the default since PyTorch 2.6, refuses.
std::string save_state_dict(const c10::impl::GenericDict& dict) {
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* buf, size_t n) { pickle.insert(pickle.end(), buf, buf + n); },
                              /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
                              /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(dict);
  pickler.stop();
  std::string bytes;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
    bytes.append(static_cast<const char*>(data), n);
    return n;
  });
  torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  return bytes;
}

}  // namespace

int export_command(const std::string& checkpoint, const std::string& out, const std::string& data_dir,
                   bool verify_md5) {
  const std::string replaced = replacing_note(out);
  const Checkpoint ckpt(checkpoint, torch::kCPU);
  VAE model = open_model(ckpt, torch::kCPU);
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& p : model->named_parameters()) dict.insert(p.key(), p.value().detach().clone());
  for (const auto& b : model->named_buffers()) dict.insert(b.key(), b.value().detach().clone());
  // The check file's images first: a wrong --data-dir writes nothing.
  const Config data = data_config(ckpt.config(), data_dir, verify_md5);
  const Dataset test = load_dataset(data.dataset, resolved_data_dir(data), Split::kTest, verify_md5, /*limit=*/8);
  write_file_atomic(out, save_state_dict(dict));
  torch::NoGradGuard no_grad;
  const ForwardExtras labels{test.labels};
  write_npy(out + ".check.npy", model->decode(model->encode(test.images, labels).first, labels));  // [8, 784] logits
  fmt::print("wrote {} ({} tensors, {}) and {}.check.npy{}\n", out, dict.size(), describe_architecture(ckpt.config()),
             out, replaced);
  // The Python that loads it: tests/oracle/reference.py's TunedVAE, built for this model.
  const Config& t = ckpt.config();
  if (t.activation == Activation::kRelu && !t.batch_norm) {
    fmt::print(
        "load: sys.path.insert(0, \"tests/oracle\"); from reference import TunedVAE\n"
        "      model = TunedVAE([{}], {}{}); model.load_state_dict(torch.load(\"{}\"))\n",
        fmt::join(t.hidden_dims, ", "), t.latent_dim, t.conditional ? ", classes=10" : "", out);
    if (t.conditional) {
      fmt::print("      conditional: model.encode(x, labels), model.decode(z, labels) (labels 0..9)\n");
    }
  } else {
    fmt::print(
        "load: the state dict's keys and shapes are model.named_parameters() of {} (TunedVAE has ReLU and no "
        "BatchNorm only)\n",
        describe_architecture(t));
  }
  return kExitOk;
}

}  // namespace vae

namespace vae {

namespace {

std::string tensor_sha256(const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU).contiguous();
  return sha256_hex(c.data_ptr(), static_cast<size_t>(c.nbytes()));
}

}  // namespace

int inspect_command(const std::string& checkpoint) {
  const Checkpoint ckpt(checkpoint, torch::kCPU);
  // Through the same restore paths as a resumed run: model, Adam, generator, progress.
  VAE model = open_model(ckpt, torch::kCPU);
  FlatParameters flat(model->parameters());
  FlatAdam adam(flat.params(), flat.grads(), AdamOptions{});
  ckpt.restore_optimizer(adam);
  ckpt.restore_rng();
  const TrainProgress& pr = ckpt.progress();
  JsonObject json;
  json.add("checkpoint", checkpoint).add("architecture", describe_architecture(ckpt.config()));
  // The settings of the run that wrote it, as config.yaml writes them.
  JsonObject config;
  for (const auto& f : config_fields()) config.add(f.name, field_to_string(ckpt.config(), f));
  json.add("config", config);
  json.add("epoch", pr.epoch).add("global_step", pr.global_step).add("step_in_epoch", pr.step_in_epoch);
  json.add("adam_step", adam.steps()).add("loss_scale", pr.scaler.scale);
  json.add("scale_growth_tracker", pr.scaler.growth_tracker);
  json.add("partial_sums", std::vector<double>(pr.partial_sums.begin(), pr.partial_sums.end()));
  json.add("partial_seconds", pr.partial_seconds);
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    json.add(name, JsonObject()
                       .add("dtype", std::string(c10::toString(t.scalar_type())))
                       .add("shape", t.sizes().vec())
                       .add("sha256", tensor_sha256(t)));
  };
  for (const auto& p : model->named_parameters()) add("model." + p.key(), p.value());
  for (const auto& b : model->named_buffers()) add("model." + b.key(), b.value());
  add("adam.exp_avg", adam.exp_avg());
  add("adam.exp_avg_sq", adam.exp_avg_sq());
  add("cpu_rng_state", at::detail::getDefaultCPUGenerator().get_state());
  fmt::print("{}\n", json.str(/*multiline=*/true));
  return kExitOk;
}

}  // namespace vae
