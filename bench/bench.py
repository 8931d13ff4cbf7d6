#!/usr/bin/python3
"""vae_ddp against the PyTorch references on this machine, side by side.

Runs vae_ddp (at each --ranks count and each --threads count; and, when build-pytorch/ exists,
its libtorch 2.11 build with one rank) and the references of tests/oracle/reference.py (the seed recipe and the tuned eager
loop on Debian's PyTorch 1.13; the tuned loop eager and under torch.compile on PyTorch 2.11
from .venv-pytorch), alternating them (A B C A B C ...) for --reps repetitions, then prints one
table:
seconds per epoch (median, min, max over every epoch but each run's first), images/s, the
test loss each reached after --epochs epochs, time ratios against each reference, the
all-reduce time per step, and the compute roofline (model FLOPs per image x images/s
against the GEMM ceiling measured by bench/gemm_peak for the same shapes and threads), with
the CPU's model and ISA as vae_ddp's start-up table names them (base/cpu_info.h), and the
speed-ups of more ranks and more threads over one. On a CPU, a second table times the fast
path's step alone (bench/step_bench) at each thread count: fp32 and bf16 GEMMs, the batch's
rows split one chunk per thread or not. A third table is the GPU's: vae_ddp's autograd and CUDA
graph steps (--step autograd / graph), PyTorch 2.11's tuned eager loop, torch.compile default
and mode="reduce-overhead" (CUDA graphs), at batch 128 and 1024, alternated, with images/s and
the ratios to the graph step; where no GPU is visible it says so instead.
Started by ./launch/bench, which builds everything first.
"""
import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"  # Debian's, with python3-torch 1.13
PYTORCH_PY = os.path.join(ROOT, ".venv-pytorch", "bin", "python")

# reference name -> (python, style, torch.compile mode or None, table label)
REFERENCES = {
    "tuned": (PY, "tuned", None, "PyTorch 1.13 tuned eager"),
    "seed": (PY, "seed", None, "PyTorch 1.13 seed recipe (fp32)"),
    "tuned2": (PYTORCH_PY, "tuned", None, "PyTorch 2.11 tuned eager"),
    "compile2": (PYTORCH_PY, "tuned", "default", "PyTorch 2.11 torch.compile"),
    "compile2-max": (PYTORCH_PY, "tuned", "max-autotune-no-cudagraphs",
                     "PyTorch 2.11 torch.compile max-autotune-no-cudagraphs"),
}


def run(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return out.stdout


def run_vae_ddp(args, ranks, threads, tmp, build_dir, step="auto"):
    out_dir = os.path.join(tmp, "vae_ddp_%d_%d_%s" % (ranks, threads, step))
    cmd = [os.path.join(build_dir, "vae_ddp"), "--epochs", str(args.epochs), "--threads", str(threads),
           "--precision", args.precision, "--device", args.device, "--batch-size", str(args.batch_size),
           "--data-dir", args.data_dir, "--out-dir", out_dir, "--resume", "none", "--log-every", "0",
           "--sample-every", "0", "--keep-checkpoints", "1", "--step", step]
    if args.device == "cpu":
        cmd.append("--profile")  # on a GPU its per-phase timing synchronizes, which the step must not
    if ranks > 1:
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-q", "-np", str(ranks)] + cmd
    stdout = run(cmd)
    with open(os.path.join(out_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    allreduce = [float(m) for m in re.findall(r"all-reduce ([0-9.]+) ms", stdout)]
    cpu = re.search(r"cpu: (.*)", stdout)
    return {"seconds": [float(r["seconds"]) for r in rows], "test_loss": float(rows[-1]["test_loss"]),
            "allreduce_ms": statistics.median(allreduce) if allreduce else None,
            "cpu": cpu.group(1).strip() if cpu else None}


def run_reference(args, name):
    python, style, compile_mode, _ = REFERENCES[name]
    precision = "fp32" if style == "seed" else args.precision  # the seed recipe as its users run it
    cmd = [python, os.path.join(ROOT, "tests", "oracle", "reference.py"), "train", "--style", style, "--epochs", str(args.epochs),
           "--threads", str(args.threads[0]), "--batch-size", str(args.batch_size), "--data-dir", args.data_dir,
           "--precision", precision, "--device", args.device] + (["--compile", compile_mode] if compile_mode else [])
    lines = [json.loads(line) for line in run(cmd).splitlines() if line.startswith("{")]
    return {"seconds": [l["seconds"] for l in lines if "seconds" in l],
            "test_loss": [l["test_loss"] for l in lines if "test_loss" in l][-1], "allreduce_ms": None}


def gemm_peak(args, threads):
    out = run([os.path.join(args.build_dir, "bench", "gemm_peak"), "--batch-size", str(args.batch_size),
               "--threads", str(threads)])
    return json.loads(out)


def step_bench(args, threads):
    """bench/step_bench's variants (fp32/bf16 GEMMs, rows split or one chunk) at `threads`."""
    out = run([os.path.join(args.build_dir, "bench", "step_bench"), "--batch-size", str(args.batch_size),
               "--threads", str(threads)])
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def layout(program):
    """(ranks, threads) of a program named "vae_ddp x<ranks> t<threads>"."""
    m = re.search(r"x(\d+) t(\d+)", program)
    return int(m.group(1)), int(m.group(2))


def summarize(runs, images):
    steady = [s for r in runs for s in (r["seconds"][1:] or r["seconds"])]
    med = statistics.median(steady)
    return {"median": med, "min": min(steady), "max": max(steady), "images_per_s": images / med,
            "test_loss": statistics.mean(r["test_loss"] for r in runs),
            "allreduce_ms": runs[0]["allreduce_ms"]}


# The GPU table's programs: (label, vae_ddp --step, or a reference's (style, torch.compile mode)).
GPU_PROGRAMS = [
    ("vae_ddp --step autograd", "autograd", None),
    ("vae_ddp --step graph (CUDA graph)", "graph", None),
    ("PyTorch 2.11 tuned eager", None, ("tuned", None)),
    ("PyTorch 2.11 torch.compile default", None, ("tuned", "default")),
    ('PyTorch 2.11 torch.compile mode="reduce-overhead"', None, ("tuned", "reduce-overhead")),
]


def gpu_visible():
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.count("GPU ")
    except OSError:
        return False
    return listed > 0 and os.path.exists(PYTORCH_PY) and subprocess.run(
        [PYTORCH_PY, "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"]).returncode == 0


def gpu_table(args):
    """The GPU rows, alternated per batch size; {} where no GPU is visible."""
    names = ", ".join(label for label, _, _ in GPU_PROGRAMS)
    if not gpu_visible() or not os.path.exists(os.path.join(args.pytorch_build_dir, "vae_ddp")):
        print("\nGPU: no GPU visible here (or no build-pytorch/): the GPU rows (%s; batch 128 and 1024) "
              "are not measured on this machine" % names)
        return {}
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (128, 1024):
            g = argparse.Namespace(**vars(args))
            g.device, g.batch_size, g.epochs = "cuda", batch, args.gpu_epochs
            runs = {label: [] for label, _, _ in GPU_PROGRAMS}
            for rep in range(args.reps):
                for label, step, ref in GPU_PROGRAMS:
                    print("[bench] GPU batch %d rep %d/%d: %s" % (batch, rep + 1, args.reps, label), file=sys.stderr,
                          flush=True)
                    if step:
                        runs[label].append(run_vae_ddp(g, 1, args.threads[0], tmp, args.pytorch_build_dir, step))
                    else:
                        REFERENCES["gpu"] = (PYTORCH_PY, ref[0], ref[1], label)
                        runs[label].append(run_reference(g, "gpu"))
            table[batch] = {label: summarize(r, 60000) for label, r in runs.items()}
    print("\nGPU (%s), %d epochs, %s, %d repetitions alternated; images/s over epochs 2-%d" % (
        subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip().splitlines()[0],
        args.gpu_epochs, args.precision, args.reps, args.gpu_epochs))
    print("| program | batch | s/epoch median | images/s | test loss | graph step's images/s vs this |")
    print("|---|---|---|---|---|---|")
    for batch, rows in table.items():
        graph = rows["vae_ddp --step graph (CUDA graph)"]["images_per_s"]
        for label, s in rows.items():
            print("| %s | %d | %.3f | %.0f | %.2f | %.2fx |" % (label, batch, s["median"], s["images_per_s"],
                                                              s["test_loss"], graph / s["images_per_s"]))
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", default="1", help="intra-op threads per process, e.g. 1,2: vae_ddp runs at each "
                    "count (each rank gets that many), the references and the 2.11 build at the first")
    ap.add_argument("--ranks", default="1", help="vae_ddp rank counts, e.g. 1,2 (each rank gets --threads)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="vae_ddp's and the tuned reference's (the seed recipe stays fp32)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--references", default="tuned,seed,tuned2,compile2,compile2-max",
                    help="which references to run: " + ", ".join(REFERENCES) + " (the 2.11 ones only where "
                    ".venv-pytorch exists), or none")
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "data", "mnist"))
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--pytorch-build-dir", "--torch2-build-dir", default=os.path.join(ROOT, "build-pytorch"),
                    help="vae_ddp built against libtorch 2.11, run with one rank when its binary exists")
    ap.add_argument("--gpu-epochs", type=int, default=3, help="epochs of each GPU run (the GPU table)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    refs = [r for r in args.references.split(",") if r in REFERENCES and os.path.exists(REFERENCES[r][0])]
    images = 60000
    pytorch_build = os.path.exists(os.path.join(args.pytorch_build_dir, "vae_ddp"))

    # vae_ddp programs are named "vae_ddp x<ranks> t<threads>".
    mine = ["vae_ddp x%d t%d" % (r, t) for t in args.threads for r in ranks]
    programs = mine + (["vae_ddp-2.11 x1 t%d" % args.threads[0]] if pytorch_build else []) + refs
    results = {p: [] for p in programs}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for p in programs:
                print("[bench] rep %d/%d: %s" % (rep + 1, args.reps, p), file=sys.stderr, flush=True)
                if p.startswith("vae_ddp"):
                    build = args.pytorch_build_dir if p.startswith("vae_ddp-2.11") else args.build_dir
                    r, t = layout(p)
                    results[p].append(run_vae_ddp(args, r, t, tmp, build))
                else:
                    results[p].append(run_reference(args, p))
    summary = {p: summarize(r, images) for p, r in results.items()}
    peaks = {t: gemm_peak(args, t) for t in sorted(set(args.threads))}
    cpu = next((r["cpu"] for p in mine for r in results[p] if r["cpu"]), "not named (no vae_ddp run on the CPU)")

    print("\nCPU: %s" % cpu)
    print("%d epochs, batch %d, %s thread(s) per process, %s, %d repetitions alternated; s/epoch over epochs 2-%d"
          % (args.epochs, args.batch_size, ",".join(map(str, args.threads)), args.precision, args.reps, args.epochs))
    head = "| program | s/epoch median | min | max | images/s | test loss @%d | " % args.epochs
    base_refs = [r for r in refs if r in ("tuned", "seed", "compile2")]  # the ratio columns
    head += " | ".join("time vs %s" % r for r in base_refs) + (" | " if base_refs else "") + "all-reduce ms/step | GFLOP/s | % of fp32 GEMM peak |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for p in programs:
        s = summary[p]
        ratios = ["%.2fx" % (s["median"] / summary[r]["median"]) for r in base_refs]
        n, t = layout(p) if p.startswith("vae_ddp") else (1, args.threads[0])
        peak = peaks[t]
        gflops = peak["flops_per_image"] * s["images_per_s"] / 1e9
        if p in REFERENCES:
            name = REFERENCES[p][3]
        else:
            build = "2.11" if p.startswith("vae_ddp-2.11") else "1.13"
            name = "vae_ddp (libtorch %s build) x %d rank(s) x %d thread(s)" % (build, n, t)
        print("| %s | %.3f | %.3f | %.3f | %.0f | %.2f | %s%s%s | %.1f | %.0f%% |" % (
            name, s["median"], s["min"], s["max"], s["images_per_s"], s["test_loss"], " | ".join(ratios),
            " | " if base_refs else "", "%.3f" % s["allreduce_ms"] if s["allreduce_ms"] is not None else "-",
            gflops, 100 * gflops / (peak["gflops_per_s"] * n)))
    for t, peak in peaks.items():
        print("\nGEMM ceiling (bench/gemm_peak, oneDNN, batch %d, %d thread(s)): %.1f GFLOP/s per process; "
              "%.2f MFLOP per image per training step" % (args.batch_size, t, peak["gflops_per_s"],
                                                           peak["flops_per_image"] / 1e6))
    for t in args.threads:
        for r in ranks:
            if r > 1 and 1 in ranks:
                speedup = summary["vae_ddp x%d t%d" % (r, t)]["images_per_s"] / summary["vae_ddp x1 t%d" % t]["images_per_s"]
                print("scaling: %d ranks x %d thread(s) vs 1 rank: %.2fx images/s (efficiency %.0f%%)"
                      % (r, t, speedup, 100 * speedup / r))
    for r in ranks:
        for t in args.threads:
            if t > 1 and 1 in args.threads:
                speedup = summary["vae_ddp x%d t%d" % (r, t)]["images_per_s"] / summary["vae_ddp x%d t1" % r]["images_per_s"]
                print("threads: %d rank(s) x %d threads vs 1 thread: %.2fx images/s (efficiency %.0f%%)"
                      % (r, t, speedup, 100 * speedup / t))
    steps = {}
    if args.device == "cpu":
        steps = {t: step_bench(args, t) for t in sorted(set(args.threads))}
        print("\nCPU: %s" % cpu)
        print("The fast path's step alone (bench/step_bench: forward, backward and Adam on one batch of %d; "
              "median and min over 15 rounds of 40 steps, variants alternated)" % args.batch_size)
        print("| threads | GEMMs | rows | step ms (median) | min | Adam ms |")
        print("|---|---|---|---|---|---|")
        for t, rows in steps.items():
            for v in rows:
                gemms, split = v["variant"].split(" ", 1)
                if v["bf16_gemms"] != "-":
                    gemms += " (%s)" % v["bf16_gemms"]
                print("| %d | %s | %s (%d chunk%s) | %.3f | %.3f | %.3f |" % (
                    t, gemms, split, v["chunks"], "s" if v["chunks"] > 1 else "", v["step_ms"], v["step_ms_min"],
                    v["adam_ms"]))
    gpu = gpu_table(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "cpu": cpu, "summary": summary, "runs": results, "gpu": gpu,
                       "gemm_peak": {str(t): p for t, p in peaks.items()},
                       "step_bench": {str(t): v for t, v in steps.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
