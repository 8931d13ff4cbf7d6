#!/usr/bin/env python3
"""The Python half of the packed GPU check (launch/gpu-check, DIR/run); standard library only,
plus torch where a subcommand says so.

  gpu_check.py ctest-file TESTS_JSON BUILD ROOT DATA MPIEXEC BINARIES_OUT   (packing, here)
      ctest --show-only=json-v1's `gpu` tests as a CTestTestfile.cmake whose paths start with
      @W@ (the unpacked payload); the binaries they run go to BINARIES_OUT, one per line.
  gpu_check.py torch-libs                                                  (torch)
      The library folders of this python3's torch wheel (torch/lib, nvidia/*/lib), ':'-joined.
  gpu_check.py torch-facts                                                 (torch)
      torch, its CUDA, cuDNN, NCCL (version and library), the GPUs it sees: one JSON object.
  gpu_check.py report WORK OUTDIR
      OUTDIR/report.json from WORK's step records, ctest log, measurement and reference runs.
"""
import glob
import json
import os
import re
import statistics
import sys


# --- packing ----------------------------------------------------------------------------

def cmake_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def ctest_file(tests_json, build, root, data, mpiexec, binaries_out):
    build, root, data = (os.path.realpath(p) for p in (build, root, data))
    mpi_real = os.path.realpath(mpiexec)
    binaries = set()

    def rewrite(arg):
        real = os.path.realpath(arg) if arg.startswith("/") else None
        if arg in (mpiexec, mpi_real) or real == mpi_real:
            return "@W@/mpi/usr/bin/mpirun"
        if real and real.startswith(build + "/"):
            binaries.add(os.path.basename(real))
            return "@W@/bin/" + os.path.basename(real)
        out = arg.replace(data, "@W@/data/mnist").replace(build, "@W@/build").replace(root, "@W@/src")
        if "@W@/build" in out:
            raise SystemExit("gpu test argument names the build tree: %s" % arg)
        return out

    env = ["VAE_DDP_TEST_BINARY=@W@/bin/vae_ddp", "VAE_DDP_TEST_DATA_DIR=@W@/data/mnist",
           "VAE_DDP_TEST_SOURCE_DIR=@W@/src",
           "VAE_DDP_TEST_MPIRUN=@W@/mpi/usr/bin/mpirun --allow-run-as-root --oversubscribe --bind-to none"]
    lines = ["# The gpu tests of vae_ddp, packed by launch/gpu-check (DIR/run writes @W@)."]
    tests = json.load(open(tests_json))["tests"]
    for t in tests:
        cmd = [rewrite(a) for a in t["command"]]
        props = {p["name"]: p["value"] for p in t.get("properties", [])}
        lines.append("add_test(%s %s)" % (cmake_quote(t["name"]), " ".join(cmake_quote(a) for a in cmd)))
        out = ["LABELS", cmake_quote(";".join(props.get("LABELS", ["gpu"]))),
               "TIMEOUT", str(int(props.get("TIMEOUT", 300))),
               "WORKING_DIRECTORY", cmake_quote("@W@/work"),
               "ENVIRONMENT", cmake_quote(";".join([rewrite(e) for e in props.get("ENVIRONMENT", [])] + env))]
        if "PROCESSORS" in props:
            out += ["PROCESSORS", str(props["PROCESSORS"])]
        for key in ("SKIP_REGULAR_EXPRESSION", "PASS_REGULAR_EXPRESSION", "FAIL_REGULAR_EXPRESSION"):
            if key in props:
                out += [key, cmake_quote(";".join(props[key]))]
        if "SKIP_RETURN_CODE" in props:
            out += ["SKIP_RETURN_CODE", str(props["SKIP_RETURN_CODE"])]
        lines.append("set_tests_properties(%s PROPERTIES %s)" % (cmake_quote(t["name"]), " ".join(out)))
    if not tests:
        raise SystemExit("no test carries the label gpu in " + build)
    with open(binaries_out, "w") as f:
        f.write("\n".join(sorted(binaries)) + "\n")
    print("\n".join(lines))


# --- torch -------------------------------------------------------------------------------

def torch_libs():
    import torch
    here = os.path.dirname(torch.__file__)
    dirs = [os.path.join(here, "lib")] + sorted(glob.glob(os.path.join(os.path.dirname(here), "nvidia", "*", "lib")))
    print(":".join(d for d in dirs if os.path.isdir(d)))


def torch_facts():
    facts = {}
    try:
        import torch
        facts["torch"] = torch.__version__
        facts["torch_path"] = os.path.dirname(torch.__file__)
        facts["cuda"] = torch.version.cuda
        facts["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        facts["cuda_available"] = torch.cuda.is_available()
        facts["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        try:
            facts["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
        except Exception as e:  # no NCCL in this torch, or no driver to ask
            facts["nccl"] = "unknown (%s)" % e
        nccl = glob.glob(os.path.join(os.path.dirname(facts["torch_path"]), "nvidia", "nccl", "lib", "libnccl.so*"))
        facts["nccl_library"] = nccl[0] if nccl else None
    except Exception as e:
        facts["error"] = "import torch failed: %s" % e
    print(json.dumps(facts))


# --- the report --------------------------------------------------------------------------

CTEST_LINE = re.compile(r"Test\s+#\d+: (\S+) \.*\s*(\*\*\*)?([A-Za-z]+)[^0-9]*([0-9.]+) sec")


def ctest_verdicts(log):
    verdicts = {}
    if not os.path.exists(log):
        return verdicts
    for line in open(log, errors="replace"):
        m = CTEST_LINE.search(line)
        if m:
            word = m.group(3)
            status = {"Passed": "passed", "Skipped": "skipped", "Failed": "failed", "Timeout": "timeout",
                      "Not": "not run"}.get(word, word.lower())
            verdicts[m.group(1)] = {"status": status, "seconds": float(m.group(4))}
    return verdicts


def median(values):
    return statistics.median(values) if values else None


def vae_run(out_dir):
    """Figures of one `vae_ddp train` measurement: its metrics.csv."""
    path = os.path.join(out_dir, "metrics.csv")
    if not os.path.exists(path):
        return {"error": "no metrics.csv"}
    rows = list(csv_rows(path))
    if not rows:
        return {"error": "metrics.csv has no epoch"}
    later = rows[1:] if len(rows) > 1 else rows
    return {"epochs": len(rows), "test_loss": float(rows[-1]["test_loss"]),
            "train_loss": float(rows[-1]["train_loss"]),
            "seconds_per_epoch_median_from_2": median([float(r["seconds"]) for r in later]),
            "images_per_s_median_from_2": median([float(r["images_per_s"]) for r in later])}


def csv_rows(path):
    lines = open(path).read().splitlines()
    header = lines[0].split(",")
    for line in lines[1:]:
        yield dict(zip(header, line.split(",")))


def reference_run(path):
    """Figures of one tests/oracle/reference.py run: its JSON lines."""
    if not os.path.exists(path):
        return {"error": "no output"}
    epochs, test = [], None
    for line in open(path, errors="replace"):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if "epoch" in d:
            epochs.append(d)
        if "test_loss" in d:
            test = d["test_loss"]
    if not epochs:
        return {"error": "no epoch finished"}
    later = epochs[1:] if len(epochs) > 1 else epochs
    return {"epochs": len(epochs), "test_loss": test, "first_epoch_seconds": epochs[0]["seconds"],
            "seconds_per_epoch_median_from_2": median([e["seconds"] for e in later])}


def last_json_line(path):
    """The last line of `path` that parses as a JSON object ({} when none: warnings around it
    are left out)."""
    found = {}
    if os.path.exists(path):
        for line in open(path, errors="replace"):
            line = line.strip()
            if line.startswith("{"):
                try:
                    found = json.loads(line)
                except ValueError:
                    pass
    return found


def report(work, outdir):
    rep = {"commit": open(os.path.join(work, "COMMIT")).read().strip() if os.path.exists(os.path.join(work, "COMMIT")) else None}
    rep["inventory"] = last_json_line(os.path.join(work, "torch_facts.json"))
    for key in ("mode", "gpus_listed", "os", "started"):
        p = os.path.join(work, "meta." + key)
        if os.path.exists(p):
            rep[key] = open(p).read().strip()
    steps = []
    if os.path.exists(os.path.join(work, "steps.tsv")):
        for line in open(os.path.join(work, "steps.tsv")):
            name, rc, seconds, kind, command = line.rstrip("\n").split("\t", 4)
            step = {"name": name, "exit": int(rc), "seconds": float(seconds or 0), "command": command,
                    "status": "passed" if rc == "0" else ("timeout" if rc in ("124", "137") else "failed")}
            try:
                if kind == "vae":
                    step.update(vae_run(os.path.join(work, "runs", name)))
                    prof = os.path.join(work, "runs", name, "profile.txt")
                    if os.path.exists(prof):
                        step["profile"] = open(prof).read().strip().splitlines()
                elif kind == "reference":
                    step.update(reference_run(os.path.join(work, "runs", name + ".jsonl")))
                elif kind == "skipped":
                    step["status"] = "skipped"
            except Exception as e:  # a figure that cannot be read is reported, never fatal
                step["report_error"] = repr(e)
            steps.append(step)
    rep["steps"] = steps
    rep["tests"] = ctest_verdicts(os.path.join(outdir, "ctest.log"))
    counts = {}
    for v in rep["tests"].values():
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    rep["test_counts"] = counts
    failed = [s["name"] for s in steps if s["status"] in ("failed", "timeout")]
    failed += [n for n, v in rep["tests"].items() if v["status"] not in ("passed", "skipped")]
    rep["failed"] = failed
    rep["ok"] = not failed
    with open(os.path.join(outdir, "report.json"), "w") as f:
        json.dump(rep, f, indent=1)
    print("report: %d steps, tests %s, failed: %s" % (len(steps), counts, ", ".join(failed) or "none"))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "ctest-file" and len(sys.argv) == 8:
        ctest_file(*sys.argv[2:])
    elif cmd == "torch-libs":
        torch_libs()
    elif cmd == "torch-facts":
        torch_facts()
    elif cmd == "report" and len(sys.argv) == 4:
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
