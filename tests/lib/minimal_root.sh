# Sourced by the tests that need a machine with nothing else (offline_install_test.sh,
# gpu_check_rehearsal_test.sh); they run as root (debootstrap, chroot, namespaces).
#   minimal_root ROOT: a minimal Debian 12 root (debootstrap --variant=minbase) in ROOT with
#     only what every target and GPU machine brings added: g++, CMake, ninja, python3, xz;
#     cached as a tarball between runs (VAE_CACHE_DIR, default ~/.cache/vae_ddp).
#   in_root ROOT USERSPEC CMD...: CMD inside ROOT, as USERSPEC (uid:gid), in new network
#     (loopback only), mount and pid namespaces; VAE_ROOT_BINDS="HOST:INSIDE ..." bind-mounts
#     host folders read-only into ROOT first.
ROOT_PACKAGES=g++,cmake,ninja-build,python3,xz-utils

minimal_root() {
  local root="$1" mirror="${VAE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  local cache="${VAE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vae_ddp}"
  local tarball="$cache/debian12-minbase-${ROOT_PACKAGES//,/-}.tar.gz"
  mkdir -p "$cache"
  if [ -f "$tarball" ]; then
    mkdir -p "$root" && tar xzf "$tarball" -C "$root"
    return
  fi
  echo "debootstrap --variant=minbase bookworm with $ROOT_PACKAGES (cached in $tarball)"
  debootstrap --variant=minbase --include="$ROOT_PACKAGES" bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
    { tail -20 "$root.debootstrap.log"; return 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb
  tar czf "$tarball.part.$$" -C "$root" . && mv "$tarball.part.$$" "$tarball"
}

in_root() {
  local root="$1" user="$2"
  shift 2
  unshare --net --mount --pid --fork -- bash -c '
    set -e
    root="$1" user="$2" binds="$3"
    shift 3
    ip link set lo up
    mount -t proc proc "$root/proc"
    mount -t sysfs -o ro sysfs "$root/sys"      # hwloc reads the CPU topology there
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    for b in $binds; do
      mkdir -p "$root${b#*:}"
      mount --bind "${b%%:*}" "$root${b#*:}"
      mount -o remount,ro,bind "$root${b#*:}"
    done
    exec chroot --userspec="$user" "$root" /usr/bin/env -i HOME=/home/builder USER=builder LANG=C.UTF-8 \
      PATH="${VAE_ROOT_PATH:-/usr/local/bin:/usr/bin:/bin}" "$@"
  ' _ "$root" "$user" "${VAE_ROOT_BINDS:-}" "$@"
}
