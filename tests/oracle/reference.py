#!/usr/bin/python3
"""The test oracle: PyTorch reference implementations of vae_ddp's model, loss and optimizer, for benchmarks
and the parity test. Runs under Debian's python3-torch 1.13 (the same libtorch as the
default build) and under PyTorch 2.11 from PyPI (.venv-pytorch, the same libtorch as the
pytorch build).

  reference.py train  --style seed|tuned [--epochs N] [--threads T] [--precision fp32|bf16] ...
      One JSON line per epoch on stdout: {"epoch", "seconds" (training only), "train_loss"},
      then {"test_loss"} after the last epoch (negative ELBO, one z per test image).
      seed:  the seeds' recipe: torchvision datasets.MNIST + DataLoader(shuffle=True) +
             ToTensor, separate mu/logvar layers, F.binary_cross_entropy(sigmoid(.), sum),
             loss.item() every step.
      tuned: a tuned eager loop: the whole split as one tensor, randperm batches, logits +
             binary_cross_entropy_with_logits, one fused mu/logvar layer, losses kept on the
             device, zero_grad(set_to_none=True).
             --compile MODE (PyTorch 2.x): the tuned forward and loss (and with them their
             backward, through AOTAutograd) under
             torch.compile(mode=MODE), e.g. default or max-autotune-no-cudagraphs; the
             first epoch includes the compilation.
  reference.py check-export FILE.pt [--data-dir DIR]
      Loads the state dict `vae_ddp export` wrote (torch.load(weights_only=True), strict
      load_state_dict) into TunedVAE and checks its
      decoded posterior means for the first 8 test images against FILE.pt.check.npy.
  reference.py parity TRACE_DIR
      Replays a trace written by `vae_ddp trace` (initial weights, batch indices, noise,
      beta) and prints the per-step losses as JSON, with vae_ddp's beside them.
"""
import argparse
import json
import os
import struct
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

PIXELS = 784


# --- data ---------------------------------------------------------------------------------

def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    _, dtype, ndim = struct.unpack(">HBB", data[:4])
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(data_dir, train, limit=0):
    prefix = "train" if train else "t10k"
    images = read_idx(os.path.join(data_dir, prefix + "-images-idx3-ubyte"))
    if limit:
        images = images[:limit]
    return torch.from_numpy(images.reshape(-1, PIXELS).astype(np.float32) / 255.0)


def load_labels(data_dir, train, limit=0):
    prefix = "train" if train else "t10k"
    labels = read_idx(os.path.join(data_dir, prefix + "-labels-idx1-ubyte"))
    return torch.from_numpy(labels[:limit] if limit else labels).long()


# --- models -------------------------------------------------------------------------------

class SeedVAE(torch.nn.Module):
    """pytorch/examples' VAE: fc1, fc21/fc22, fc3, fc4, sigmoid output."""

    def __init__(self, hidden=400, latent=20):
        super().__init__()
        self.fc1 = torch.nn.Linear(PIXELS, hidden)
        self.fc21 = torch.nn.Linear(hidden, latent)
        self.fc22 = torch.nn.Linear(hidden, latent)
        self.fc3 = torch.nn.Linear(latent, hidden)
        self.fc4 = torch.nn.Linear(hidden, PIXELS)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def mlp(widths):
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


class TunedVAE(torch.nn.Module):
    """vae_ddp's layout: encoder.0, fused head (mu | logvar), decoder.0, decoder.2; logits out.
    classes=10: the conditional model (--conditional), whose encoder and decoder take the
    label's one-hot vector after their input: encode(x, labels), decode(z, labels)."""

    def __init__(self, hidden=(400,), latent=20, classes=0):
        super().__init__()
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        self.classes = classes
        self.encoder = mlp([PIXELS + classes] + hidden)
        self.head = torch.nn.Linear(hidden[-1], 2 * latent)
        self.decoder = mlp([latent + classes] + hidden[::-1])
        self.decoder.append(torch.nn.Linear(hidden[0], PIXELS))

    def with_label(self, h, labels):
        if not self.classes:
            return h
        return torch.cat([h, F.one_hot(labels.long(), self.classes).to(h.dtype)], dim=1)

    def encode(self, x, labels=None):
        return self.head(self.encoder(self.with_label(x, labels))).chunk(2, dim=1)

    def decode(self, z, labels=None):
        return self.decoder(self.with_label(z, labels))

    def forward(self, x, eps, labels=None):
        mu, logvar = self.encode(x, labels)
        return self.decode(mu + torch.exp(0.5 * logvar) * eps, labels), mu, logvar


def kld_rows(mu, logvar):
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def tuned_loss(model, x, eps, beta, global_batch):
    logits, mu, logvar = model(x, eps)
    bce = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").sum(1)
    return (bce + beta * kld_rows(mu.float(), logvar.float())).sum() / global_batch


def test_loss(model, test, seed, tuned, device="cpu"):
    """Negative ELBO per test image, one z per image, batches of 1000."""
    gen = torch.Generator(device=device).manual_seed(seed)
    test = test.to(device)
    total = 0.0
    with torch.inference_mode():
        for start in range(0, test.shape[0], 1000):
            x = test[start:start + 1000]
            if tuned:
                eps = torch.randn(x.shape[0], model.head.out_features // 2, generator=gen, device=device)
                total += tuned_loss(model, x, eps, 1.0, 1).item()
            else:
                torch.manual_seed(seed + start)
                recon, mu, logvar = model(x)
                total += (F.binary_cross_entropy(recon, x, reduction="sum") + kld_rows(mu, logvar).sum()).item()
    return total / test.shape[0]


# --- training -----------------------------------------------------------------------------

def autocast(precision, device="cpu"):
    kind = torch.device(device).type
    if precision == "bf16":
        return torch.autocast(kind, dtype=torch.bfloat16)
    return torch.autocast(kind, enabled=False)


class IdxImages(torch.utils.data.Dataset):
    """What torchvision's MNIST + ToTensor hands a DataLoader, image by image (for a Python
    without torchvision): a [1, 28, 28] float tensor in [0, 1] and the label."""

    def __init__(self, data_dir):
        self.images = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte"))
        self.labels = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte"))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(self.images[i].astype(np.float32) / 255.0).unsqueeze(0), int(self.labels[i])


def seed_dataset(data_dir, root):
    """The seeds' data pipeline: torchvision's MNIST with ToTensor, else IdxImages."""
    try:
        from torchvision import datasets, transforms
    except ImportError:
        print(json.dumps({"note": "no torchvision here: IdxImages stands in for datasets.MNIST + ToTensor"}),
              file=sys.stderr)
        return IdxImages(data_dir)
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        os.symlink(os.path.abspath(os.path.join(data_dir, name)), os.path.join(raw, name))
    return datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())


def train_seed(args, test):
    device = args.device
    with tempfile.TemporaryDirectory() as root:
        dataset = seed_dataset(args.data_dir, root)
        if args.train_limit:
            dataset = torch.utils.data.Subset(dataset, range(args.train_limit))
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
        model = SeedVAE(args.hidden, args.latent).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        for epoch in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            total = 0.0
            for x, _ in loader:
                x = x.view(-1, PIXELS).to(device)  # the seeds' copy per batch
                opt.zero_grad()
                with autocast(args.precision, device):
                    recon, mu, logvar = model(x)
                loss = F.binary_cross_entropy(recon.float(), x, reduction="sum") + \
                    kld_rows(mu.float(), logvar.float()).sum()
                loss.backward()
                total += loss.item()
                opt.step()
            emit(epoch, time.perf_counter() - t0, total / len(dataset))
        return test_loss(model, test, args.seed, tuned=False, device=device)


def train_tuned(args, test):
    device = args.device
    train = load_split(args.data_dir, True, args.train_limit).to(device)  # the split lives on the device
    n = train.shape[0]
    model = TunedVAE(args.hidden, args.latent).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, foreach=args.foreach)
    gen = torch.Generator(device=device).manual_seed(args.seed)

    def forward_loss(x, eps):
        with autocast(args.precision, device):
            return tuned_loss(model, x, eps, 1.0, x.shape[0])

    if args.compile:  # AOTAutograd compiles the backward graph too
        forward_loss = torch.compile(forward_loss, mode=None if args.compile == "default" else args.compile)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen, device=device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for start in range(0, n, args.batch_size):
            x = train.index_select(0, perm[start:start + args.batch_size])
            eps = torch.randn(x.shape[0], args.latent, generator=gen, device=device)
            opt.zero_grad(set_to_none=True)
            loss = forward_loss(x, eps)
            loss.backward()
            opt.step()
            total += loss.detach() * x.shape[0]
        train_loss = total.item() / n  # waits for the epoch's last step: its time is all in
        emit(epoch, time.perf_counter() - t0, train_loss)
    return test_loss(model, test, args.seed, tuned=True, device=device)


def emit(epoch, seconds, train_loss):
    print(json.dumps({"epoch": epoch, "seconds": seconds, "train_loss": train_loss}), flush=True)


# --- parity -------------------------------------------------------------------------------

def parity(trace_dir, tolerance):
    """Replays vae_ddp's first steps: same weights, batches, noise and beta. Prints each
    step's two losses as JSON; exits 1 when one differs by more than `tolerance` relative."""
    meta = json.load(open(os.path.join(trace_dir, "trace.json")))
    cfg = meta["config"]
    train = load_split(meta["data_dir"], True)
    model = TunedVAE(cfg["hidden"], cfg["latent"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(np.load(os.path.join(trace_dir, "init." + name + ".npy"))))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    out = []
    for k, step in enumerate(meta["steps"]):
        idx = torch.from_numpy(np.load(os.path.join(trace_dir, "step%03d.idx.npy" % k)))
        eps = torch.from_numpy(np.load(os.path.join(trace_dir, "step%03d.eps.npy" % k)))
        x = train.index_select(0, idx)
        loss = tuned_loss(model, x, eps, step["beta"], x.shape[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out.append({"step": k, "python": loss.item(), "vae_ddp": step["loss"],
                    "relative_difference": abs(loss.item() - step["loss"]) / abs(loss.item())})
    print(json.dumps(out, indent=1))
    worst = max(s["relative_difference"] for s in out)
    print("parity: %d steps, largest relative difference %.3g (tolerance %g)" % (len(out), worst, tolerance))
    sys.exit(0 if worst <= tolerance else 1)


def check_export(path, data_dir, tolerance=1e-5):
    state = torch.load(path, weights_only=True)  # 2.6+'s default; 1.13 has it too
    hidden = [state["encoder.%d.weight" % (2 * i)].shape[0] for i in range(len(state) // 2)
              if "encoder.%d.weight" % (2 * i) in state]
    latent = state["head.weight"].shape[0] // 2
    classes = state["encoder.0.weight"].shape[1] - PIXELS  # 10 for a conditional model
    model = TunedVAE(hidden, latent, classes)
    model.load_state_dict(state, strict=True)
    x = load_split(data_dir, False, limit=8)
    labels = load_labels(data_dir, False, limit=8)
    with torch.no_grad():
        mu, _ = model.encode(x, labels)
        logits = model.decode(mu, labels)
    expected = torch.from_numpy(np.load(path + ".check.npy"))
    err = ((logits - expected).abs().max() / expected.abs().max()).item()
    print("check-export: %s loads into TunedVAE(%s, %d%s); largest relative difference %.3g (tolerance %g)"
          % (path, hidden, latent, ", classes=%d" % classes if classes else "", err, tolerance))
    sys.exit(0 if err <= tolerance else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--style", choices=["seed", "tuned"], required=True)
    t.add_argument("--data-dir", default="data/mnist")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--hidden", type=int, default=400)
    t.add_argument("--latent", type=int, default=20)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--train-limit", type=int, default=0)
    t.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    t.add_argument("--device", default="cpu", help="cpu or cuda: where the model, and for tuned the data, live")
    t.add_argument("--foreach", action="store_true", help="tuned: multi-tensor Adam")
    t.add_argument("--compile", help="tuned: torch.compile the step with this mode (default, max-autotune-no-cudagraphs, ...)")
    e = sub.add_parser("check-export")
    e.add_argument("file")
    e.add_argument("--data-dir", default="data/mnist")
    p = sub.add_parser("parity")
    p.add_argument("trace_dir")
    p.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    if args.command == "check-export":
        torch.set_num_threads(1)
        check_export(args.file, args.data_dir)
    if args.command == "parity":
        torch.set_num_threads(1)
        parity(args.trace_dir, args.tolerance)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    test = load_split(args.data_dir, False)
    loss = (train_seed if args.style == "seed" else train_tuned)(args, test)
    print(json.dumps({"test_loss": loss}), flush=True)


if __name__ == "__main__":
    main()
