#!/usr/bin/env bash
# gpu_check_rehearsal_test.sh SOURCE_DIR BUILD_DIR PYTHON
#
# The packed GPU check's whole path but the GPU: launch/gpu-check --pack from BUILD_DIR (the
# PyTorch 2.11 build), then DIR/run --quick inside the minimal Debian root of the offline
# test (tests/lib/minimal_root.sh: g++, CMake, ninja, python3, xz; none of the libraries
# vae_ddp builds on), with no network, as an unprivileged user, and with PYTHON's torch 2.11
# wheel (its virtual environment, read-only) as the GPU machine's python3. It must write the
# inventory and the report (at most 8 files), report every gpu test skipped ("no GPU"), pass
# the CPU smoke training, and find every packed binary's libraries inside the folder, the
# torch wheel or the base system (ldd).
# Needs root here (chroot, namespaces); skips (77) without it.
set -euo pipefail
src="$1" build="$2" python="$3"
say() { echo "[gpu-check-rehearsal] $*"; }
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $* (files kept in ${work:-?})"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root to enter a minimal Debian root (chroot, unshare)"
for tool in debootstrap unshare chroot ip patchelf xz; do
  command -v "$tool" >/dev/null || skip "needs $tool (launch/setup installs it with the test packages)"
done
venv="$(cd "$(dirname "$python")/.." && pwd)"
[ -f "$venv/pyvenv.cfg" ] || skip "$python is not a virtual environment's (the rehearsal mounts its torch wheel)"
# shellcheck source=lib/minimal_root.sh
source "$(dirname "$0")/lib/minimal_root.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/vae-gpu-rehearsal.XXXXXX")"
t0=$(date +%s)

say "launch/gpu-check --pack"
VAE_PYTORCH_BUILD_DIR="$build" "$src/launch/gpu-check" --pack "$work/pack" 2>&1 | tail -4 || fail "--pack"
[ -x "$work/pack/run" ] && [ -f "$work/pack/payload.tar.xz" ] || fail "--pack wrote no run and payload"
size=$(du -cb "$work/pack"/* | tail -1 | cut -f1)
[ "$size" -le $((45 * 1048576)) ] || fail "the pack is $size bytes, over 45 MiB"
t1=$(date +%s)

root="$work/root"
minimal_root "$root" || fail "the minimal root"
for lib in libspdlog.so.1.10 libmpi.so.40 libpng16.so.16 libyaml-cpp.so.0.7; do
  if compgen -G "$root/usr/lib/*/$lib" >/dev/null; then fail "the minimal root has $lib: it must not"; fi
done
echo "builder:x:1000:1000::/home/builder:/bin/bash" >>"$root/etc/passwd"
echo "builder:x:1000:" >>"$root/etc/group"
mkdir -p "$root/home/builder"
cp -a "$work/pack" "$root/home/builder/pack"
chown -R 1000:1000 "$root/home/builder"
t2=$(date +%s)

say "DIR/run --quick in the root: no network, as builder, python3 = the torch 2.11 wheel's (read-only)"
rc=0
VAE_ROOT_BINDS="$venv:/opt/torch" VAE_ROOT_PATH=/opt/torch/bin:/usr/bin:/bin \
  in_root "$root" 1000:1000 /home/builder/pack/run --quick /home/builder/out >"$work/run.txt" 2>&1 || rc=$?
t3=$(date +%s)
grep '^\[gpu-check' "$work/run.txt" || true
out="$root/home/builder/out"
[ -f "$out/report.json" ] || { tail -30 "$work/run.txt"; fail "no report.json"; }
files=$(find "$out" -type f | wc -l)
[ "$files" -le 8 ] || fail "$files files in OUTDIR (at most 8)"
grep -q "== torch" "$out/inventory.txt" || fail "no inventory"
python3 - "$out/report.json" <<'CHECK' || fail "the report"
import json, sys
r = json.load(open(sys.argv[1]))
steps = {s["name"]: s for s in r["steps"]}
problems = []
if r["inventory"].get("torch", "").split("+")[0] != "2.11.0":
    problems.append("torch in the inventory: %s" % r["inventory"])
if not r["tests"]:
    problems.append("no test verdicts")
not_skipped = [n for n, v in r["tests"].items() if v["status"] != "skipped"]
if not_skipped:
    problems.append("gpu tests that did not report 'no GPU' as skipped: %s" % not_skipped)
for name in ("ldd_resolves", "cpu_smoke"):
    if steps.get(name, {}).get("status") != "passed":
        problems.append("%s: %s" % (name, steps.get(name)))
if steps.get("cpu_smoke", {}).get("test_loss", 1e9) > 300:
    problems.append("the CPU smoke training did not learn: %s" % steps.get("cpu_smoke"))
print("report: %d gpu tests skipped (no GPU), ldd %s, CPU smoke test loss %.2f, failed: %s"
      % (len(r["tests"]), steps["ldd_resolves"]["status"], steps["cpu_smoke"]["test_loss"], r["failed"] or "none"))
sys.exit(1 if problems else 0)
CHECK
[ "$rc" -eq 0 ] || { tail -20 "$work/run.txt"; fail "DIR/run --quick exited $rc"; }
say "pack $((t1 - t0)) s ($(awk -v b="$size" 'BEGIN {printf "%.1f MiB", b / 1048576}')), root $((t2 - t1)) s, run --quick $((t3 - t2)) s"
rm -rf "$work"
echo "PASS"
