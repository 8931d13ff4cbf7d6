#!/usr/bin/env bash
# offline_install_test.sh SOURCE_DIR MNIST_DIR
#
# The offline, no-root install end to end, on a machine that has nothing else:
#   1. a minimal Debian 12 root (tests/lib/minimal_root.sh: debootstrap --variant=minbase, with
#      only g++, CMake, ninja, python3 and xz added), cached as a tarball between runs;
#   2. `launch/setup --download-only DIR --with-libtorch` run here as an unprivileged user;
#   3. the folder copied into the root; then, in a new network namespace (loopback only) and
#      as an unprivileged user of the root: `launch/setup --from DIR --prefix P` builds
#      vae_ddp against Debian's libtorch from the folder, one short epoch trains, and
#      `mpirun -np 2` of the relocated Open MPI trains one short epoch on the CPU.
# Needs root here (debootstrap, chroot, namespaces); skips (77) without it.
set -euo pipefail
src="$1" mnist="$2"
say() { echo "[offline-install-test] $*"; }
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $* (files kept in ${work:-?})"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root to build and enter a minimal Debian root (debootstrap, chroot, unshare)"
for tool in debootstrap unshare chroot setpriv ip; do
  command -v "$tool" >/dev/null || skip "needs $tool (launch/setup installs it with the test packages)"
done
# shellcheck source=lib/minimal_root.sh
source "$(dirname "$0")/lib/minimal_root.sh"
t0=$(date +%s)

# Under /tmp, which every user can reach (a checkout under /root is not); the mounts below
# are private to their namespace and go with it.
work="$(mktemp -d "${TMPDIR:-/tmp}/vae-offline-install.XXXXXX")"
root="$work/root"

# --- 1. the minimal root, from the cache when there is one ---
minimal_root "$root" || fail "debootstrap"
t1=$(date +%s)

# --- 2. the download folder, made by an unprivileged user (nobody) ---
mkdir -p "$work/src" "$work/mnist" "$work/home"
git -c safe.directory="$src" -C "$src" ls-files -z | (cd "$src" && xargs -0 tar cf -) | tar xf - -C "$work/src"
cp "$mnist"/* "$work/mnist/"
chown -R nobody "$work/home"
chmod -R a+rX "$work/src" "$work/mnist"
chmod a+rwx "$work"
say "launch/setup --download-only as $(id -un nobody)"
setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$work/home" VAE_MNIST_SOURCE="$work/mnist" \
  "$work/src/launch/setup" --download-only "$work/dl" --with-libtorch || fail "--download-only"
t2=$(date +%s)

# --- 3. install, build and train inside the root: no network, no root ---
echo "builder:x:1000:1000::/home/builder:/bin/bash" >>"$root/etc/passwd"
echo "builder:x:1000:" >>"$root/etc/group"
mkdir -p "$root/home/builder"
cp -a "$work/dl" "$root/home/builder/dl"
cat >"$root/home/builder/inside.sh" <<'INSIDE'
set -euo pipefail
cd "$HOME"
[ "$(id -u)" != 0 ] || { echo "FAIL: running as root"; exit 1; }
# deb.debian.org's address: no route to it (nor a resolver) in this namespace.
if (exec 3<>/dev/tcp/151.101.2.132/80) 2>/dev/null; then echo "FAIL: the network is reachable"; exit 1; fi
start=$(date +%s)
VAE_BUILD_TARGET=vae_ddp dl/vae_ddp/launch/setup --from dl --prefix "$HOME/vae"
echo "install and build: $(($(date +%s) - start)) s"
source "$HOME/vae/env.sh"
cd dl/vae_ddp
run=(--epochs 1 --train-limit 2048 --log-every 0 --threads 1)
./build/vae_ddp --world 1 --device cpu "${run[@]}" --out-dir "$HOME/one"
mpirun -np 2 --oversubscribe ./build/vae_ddp --device cpu "${run[@]}" --out-dir "$HOME/two" 2>&1 | tee "$HOME/mpirun.log"
# A relocated Open MPI that misses its components or help files says so, and may still run.
if grep -q "Sorry!\|help file\|component.*not found" "$HOME/mpirun.log"; then echo "FAIL: Open MPI is not relocated"; exit 1; fi
for out in one two; do
  for f in metrics.csv checkpoints/last.pt samples/epoch_001.png loss_curves.png; do
    [ -s "$HOME/$out/$f" ] || { echo "FAIL: $out/$f is missing"; exit 1; }
  done
  [ "$(wc -l <"$HOME/$out/metrics.csv")" -ge 2 ] || { echo "FAIL: $out/metrics.csv has no epoch"; exit 1; }
done
echo "inside: done"
INSIDE
chown -R 1000:1000 "$root/home/builder"
say "launch/setup --from in the root, as builder, in a network namespace with loopback only"
in_root "$root" 1000:1000 /bin/bash /home/builder/inside.sh || fail "install, build or training inside the root"
t3=$(date +%s)
say "minimal root $((t1 - t0)) s, download $((t2 - t1)) s ($(du -sh "$work/dl" | cut -f1)), install + build + train $((t3 - t2)) s"
rm -rf "$work"
echo "PASS"
