# The offline, no-root install (sourced by launch/setup):
#   download_only DIR [--with-libtorch] [--lean]   on a machine with Debian's registry, any user;
#   install_from DIR PREFIX                        on the target: no network, no root.
# DIR holds debs/ (the packages, dependencies resolved by apt), mnist/ (the four .gz files),
# vae_ddp/ (this source tree) and MANIFEST (package, version, sha256 of every file).

DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${VAE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY="${VAE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
TORCH_HINT="python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'"

offline_usage() {
  say "usage: launch/setup --download-only DIR [--with-libtorch] [--lean]"
  say "       launch/setup --from DIR --prefix PREFIX        (TORCH_DIR=<libtorch's cmake dir>, or DIR made --with-libtorch)"
  exit 2
}

# --- download: apt with its own state in a temp dir, so it needs neither root nor this
# machine's package lists, and sees Debian 12 whatever this machine runs -------------------

# apt_private WORK: writes WORK's sources and empty state; sets APT_OPTS.
apt_private() {
  local work="$1"
  [ -r "$DEBIAN_KEYRING" ] || { say "needs Debian's archive keyring ($DEBIAN_KEYRING: package debian-archive-keyring)"; exit 1; }
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/etc/preferences.d" "$work/etc/apt.conf.d"
  : >"$work/status"
  cat >"$work/etc/sources.list" <<SOURCES
deb [signed-by=$DEBIAN_KEYRING] $DEBIAN_MIRROR $DEBIAN_SUITE main
deb [signed-by=$DEBIAN_KEYRING] $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb [signed-by=$DEBIAN_KEYRING] $DEBIAN_SECURITY $DEBIAN_SUITE-security main
SOURCES
  APT_OPTS=(-o "Dir::Etc::sourcelist=$work/etc/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::Etc::preferencesparts=$work/etc/preferences.d" -o "Dir::Etc::parts=$work/etc/apt.conf.d"
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "Dir::State::status=$work/status"
    -o Debug::NoLocking=1 -o APT::Install-Recommends=false -o APT::Sandbox::User="$(id -un)")
}

# base_status WORK: a dpkg status file in which Debian 12's base system (its required
# packages and apt) and the toolchain the target brings (g++, CMake, ninja) are installed, so
# that apt resolves only what lies beyond them.
base_status() {
  local work="$1" base
  base="$(apt-cache "${APT_OPTS[@]}" dumpavail | awk '/^Package:/ {p = $2} /^Priority: required/ {print p}' | sort -u)"
  # shellcheck disable=SC2086
  apt-get "${APT_OPTS[@]}" -s install $base apt "${TOOLCHAIN_PACKAGES[@]}" |
    awk '/^Inst / {gsub(/[()]/, "", $3); print $2 "=" $3}' >"$work/base.list"
  xargs apt-cache "${APT_OPTS[@]}" show <"$work/base.list" |
    awk '/^Package:/ {seen = ($2 in done); done[$2] = 1}
         /^$/ {if (!seen) print "Status: install ok installed\n"; seen = 1; next}
         !seen && !/^(Filename|Size|MD5sum|SHA1|SHA256|SHA512|Description-md5):/ {print}' >"$work/base-status"
}

download_only() {
  local dir="" torch=0 lean=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --download-only) dir="${2:-}"; shift 2 || offline_usage ;;
      --with-libtorch) torch=1; shift ;;
      --lean) lean=1; shift ;;
      *) say "unknown option for --download-only: $1"; offline_usage ;;
    esac
  done
  [ -n "$dir" ] || offline_usage
  mkdir -p "$dir/debs" "$dir/mnist" || { say "--download-only: cannot create $dir"; exit 2; }
  dir="$(cd "$dir" && pwd)"
  local work wanted=("${CORE_PACKAGES[@]}")
  [ $lean = 1 ] || wanted+=("${FEATURE_PACKAGES[@]}")
  [ $torch = 1 ] && wanted+=("${TORCH_PACKAGES[@]}")
  work="$(mktemp -d)"
  apt_private "$work"
  say "package lists of Debian 12 from $DEBIAN_MIRROR"
  apt-get "${APT_OPTS[@]}" -qq update
  base_status "$work"
  say "downloading ${wanted[*]} and what they need beyond a base system with ${TOOLCHAIN_PACKAGES[*]}"
  rm -f "$dir"/debs/*.deb
  apt-get "${APT_OPTS[@]}" -o "Dir::State::status=$work/base-status" -o "Dir::Cache::archives=$dir/debs" \
    -qq -y --download-only install "${wanted[@]}" >/dev/null
  rm -rf "$dir/debs/partial" "$dir/debs/lock"
  DATA_DIR="$work/mnist" fetch_mnist
  local f
  for f in "${MNIST_FILES[@]}"; do gzip -9nc "$work/mnist/$f" >"$dir/mnist/$f.gz"; done
  rm -rf "$dir/vae_ddp" && mkdir "$dir/vae_ddp"
  source_files | (cd "$ROOT" && xargs -0 tar cf -) | tar xf - -C "$dir/vae_ddp"
  write_manifest "$dir"
  rm -rf "$work"
  say "$(find "$dir/debs" -name '*.deb' | wc -l) packages, MNIST and the source in $dir: $(du -sh "$dir" | cut -f1) in all"
  say "on the target: $dir/vae_ddp/launch/setup --from $dir --prefix PREFIX (with TORCH_DIR=<libtorch's cmake dir>$([ $torch = 1 ] && echo ', or Debian'"'"'s libtorch from here'))"
}

# This source tree's files (NUL-separated, relative to ROOT): git's, or what a release holds.
source_files() {
  if git -c safe.directory="$ROOT" -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -c safe.directory="$ROOT" -C "$ROOT" ls-files -z
  else
    # Only the top level's build trees, virtual environments, data and runs: src/data is source.
    (cd "$ROOT" && find . \( -path './build*' -o -path './.venv*' -o -path ./data -o -path ./runs \) -prune -o -type f -print0)
  fi
}

# MANIFEST: one line per file: package, version, sha256, path relative to DIR.
write_manifest() {
  local dir="$1" deb
  {
    echo "# package version sha256 file"
    for deb in "$dir"/debs/*.deb; do
      echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version) $(sha256sum "$deb" | cut -d' ' -f1) debs/${deb##*/}"
    done
    for deb in "$dir"/mnist/*.gz; do
      echo "mnist - $(sha256sum "$deb" | cut -d' ' -f1) mnist/${deb##*/}"
    done
  } >"$dir/MANIFEST"
}

# --- install: unpack into PREFIX, keep the system's own libraries, write env.sh ------------

# deb_tar DEB control|data TAR-OPTIONS...: tar on one of the package's two archives, through
# dpkg-deb where there is one, else ar (a target that is not Debian-based), for every reader
# of the packages here.
deb_tar() {
  local deb="$1" part="$2" tmp rc=0
  shift 2
  if command -v dpkg-deb >/dev/null 2>&1; then
    if [ "$part" = control ]; then dpkg-deb --ctrl-tarfile "$deb"; else dpkg-deb --fsys-tarfile "$deb"; fi | tar -f - "$@"
    return
  fi
  tmp="$(mktemp -d)"
  (cd "$tmp" && ar x "$deb") && tar -f "$tmp/$part".tar.* "$@" || rc=$?
  rm -rf "$tmp"
  return $rc
}

# Some packages still ship /lib or /bin (before Debian's merged /usr): merge them into usr/,
# so that PREFIX/usr holds everything; then absolute links into the packages' own files
# (libnl-3.so -> /lib/x86_64-linux-gnu/libnl-3.so.200) point into PREFIX.
merge_usr() {
  local prefix="$1" d link target
  for d in bin sbin lib lib64; do
    [ -d "$prefix/$d" ] && [ ! -L "$prefix/$d" ] || continue
    mkdir -p "$prefix/usr/$d"
    cp -a --remove-destination "$prefix/$d/." "$prefix/usr/$d/"   # never through a link
    rm -rf "${prefix:?}/$d"
    ln -s "usr/$d" "$prefix/$d"
  done
  while IFS= read -r -d '' link; do
    target="$(readlink "$link")"
    if [[ "$target" == /* ]] && [ -e "$prefix$target" ]; then ln -sfnr "$prefix$target" "$link"; fi
  done < <(find "$prefix/usr" -type l -print0)
}

# The alternatives the packages' maintainer scripts would register (mpirun -> mpirun.openmpi,
# libblas.so.3 -> OpenBLAS, ...): for each link the highest-priority target, as symlinks.
link_alternatives() {
  local dir="$1" prefix="$2" deb tmp link target
  tmp="$(mktemp -d)"
  for deb in "$dir"/debs/*.deb; do
    deb_tar "$deb" control -xO ./postinst 2>/dev/null || true   # most have none
    echo
  done | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' |
    awk '/update-alternatives/ {
           for (i = 1; i <= NF; i++) {
             if ($i == "--install") { prio = $(i + 4); print prio, $(i + 1), $(i + 3) }
             else if ($i == "--slave") print prio, $(i + 1), $(i + 3)
           }
         }' | grep -v '\$' | sort -k1,1nr -s >"$tmp/alternatives"
  while read -r _ link target; do
    [ -e "$prefix$target" ] && [ ! -e "$prefix$link" ] && [ ! -L "$prefix$link" ] || continue
    mkdir -p "$(dirname "$prefix$link")"
    ln -sr "$prefix$target" "$prefix$link"
  done <"$tmp/alternatives"
  rm -rf "$tmp"
}

# The sonames the system's dynamic linker resolves (its ldconfig cache), for this machine's
# ABI (libc.so.6's), as "soname path" lines.
system_sonames() {
  local ldconfig
  ldconfig="$(command -v ldconfig || echo /sbin/ldconfig)"
  "$ldconfig" -p | awk -F' => ' 'NR > 1 {
      split($1, f, " "); abi = substr($1, index($1, "(")); sub(/\)$/, "", abi); split(abi, a, ",")
      abi = a[1] "," a[2]; if (f[1] == "libc.so.6" && !want) want = abi
      name[NR] = f[1]; kind[NR] = abi; path[NR] = $2
    }
    END {for (i in name) if (kind[i] == want) print name[i], path[i]}'
}

# Open MPI's programs (mpirun, mpicxx, orted, ompi_info, ...) as links in PREFIX/mpi-bin, which
# env.sh puts first on PATH: a system MPI's mpirun or wrapper must not meet this libmpi. The
# rest of PREFIX/usr/bin goes after the system's own programs (python3 stays the system's).
link_mpi_programs() {
  local prefix="$1" f
  mkdir -p "$prefix/mpi-bin"
  for f in "$prefix"/usr/bin/{mpi,orte,ompi,opal,osh,shmem}*; do
    if [ -e "$f" ]; then ln -sfn "../usr/bin/${f##*/}" "$prefix/mpi-bin/${f##*/}"; fi
  done
}

# Replaces every shared library of PREFIX whose soname the system already provides by a link
# to the system's copy, so that copy wins wherever PREFIX's is asked for (the loader's
# search, CMake configs naming libfoo.so.1.2.3) and nothing of the system is shadowed. Links
# that end at such a library, or at one of the base system's that was never downloaded
# (libcurl.so -> libcurl.so.4.8.0 where the system has libcurl.so.4), point there too.
keep_system_libraries() {
  local prefix="$1" f soname link end name target
  declare -A system=() removed=()
  while read -r soname target; do [ -n "${system[$soname]:-}" ] || system[$soname]="$target"; done < <(system_sonames)
  while IFS= read -r -d '' f; do
    soname="$(readelf -d "$f" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
    [ -n "$soname" ] && [ -n "${system[$soname]:-}" ] || continue
    removed[$f]="${system[$soname]}"
    echo "$soname ${system[$soname]}"
  done < <(find "$prefix/usr/lib" -type f -name 'lib*.so*' -print0) >"$prefix/SYSTEM_LIBRARIES"
  while IFS= read -r -d '' link; do
    end="$(realpath -m "$link")"
    target="${removed[$end]:-}"
    if [ -z "$target" ] && [ ! -e "$end" ]; then
      name="${end##*/}"
      while [ -z "$target" ] && [[ "$name" == *.so.* ]]; do
        target="${system[$name]:-}"
        name="${name%.*}"
      done
    fi
    if [ -n "$target" ]; then ln -sfn "$target" "$link"; fi
  done < <(find "$prefix/usr/lib" -type l -name 'lib*.so*' -print0)
  for f in "${!removed[@]}"; do ln -sfn "${removed[$f]}" "$f"; done
  say "kept the system's own copy of ${#removed[@]} libraries (listed in $prefix/SYSTEM_LIBRARIES)"
}

# pkg-config files name their prefix (/usr) literally: point them at PREFIX/usr.
relocate_pkgconfig() {
  local prefix="$1"
  find "$prefix/usr" -path '*/pkgconfig/*.pc' -type f -print0 |
    xargs -0 -r sed -i -E -e "s#^([A-Za-z_]+)=/usr(/|\$)#\1=$prefix/usr\2#" -e "s#(-[IL])/usr/#\1$prefix/usr/#g"
}

# PREFIX/env.sh: what a shell needs to build and run against PREFIX.
write_env() {
  local prefix="$1" triple="$2"
  cat >"$prefix/env.sh" <<ENV
# Made by launch/setup --from: source it before building, testing or running vae_ddp.
VAE_PREFIX="$prefix"
export PATH="\$VAE_PREFIX/mpi-bin\${PATH:+:\$PATH}:\$VAE_PREFIX/usr/bin"
export LD_LIBRARY_PATH="\$VAE_PREFIX/usr/lib/$triple:\$VAE_PREFIX/usr/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CMAKE_PREFIX_PATH="\$VAE_PREFIX/usr\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export PKG_CONFIG_PATH="\$VAE_PREFIX/usr/lib/$triple/pkgconfig:\$VAE_PREFIX/usr/lib/pkgconfig:\$VAE_PREFIX/usr/share/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
# The multiarch header folder, which Debian's gcc searches under /usr/include by default
# (openssl/opensslconf.h, curl/ live there).
export CPATH="\$VAE_PREFIX/usr/include/$triple\${CPATH:+:\$CPATH}"
# Open MPI finds its components, help files and MCA defaults under the prefix; its PMIx, its
# components (the prefix variables do not move those).
export OPAL_PREFIX="\$VAE_PREFIX/usr"
export OPAL_SYSCONFDIR="\$VAE_PREFIX/etc/openmpi"
export PMIX_MCA_mca_base_component_path="\$VAE_PREFIX/usr/lib/$triple/pmix2/lib/pmix"
ENV
  if [ -d "$prefix/usr/share/fonts" ]; then
    mkdir -p "$prefix/etc/fonts"
    cat >"$prefix/etc/fonts/vae_ddp.conf" <<FONTS
<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir>$prefix/usr/share/fonts</dir>
  <cachedir prefix="xdg">fontconfig</cachedir>
</fontconfig>
FONTS
    echo "export FONTCONFIG_FILE=\"\$VAE_PREFIX/etc/fonts/vae_ddp.conf\"  # the labels' font (DejaVu)" >>"$prefix/env.sh"
  fi
}

install_from() {
  local dir="$1" prefix="$2" deb triple
  [ -f "$dir/MANIFEST" ] || { say "--from $dir: no MANIFEST there (make the folder with launch/setup --download-only)"; exit 2; }
  dir="$(cd "$dir" && pwd)"
  mkdir -p "$prefix" 2>/dev/null && [ -w "$prefix" ] || { say "--prefix $prefix: cannot create or write it"; exit 2; }
  prefix="$(cd "$prefix" && pwd)"
  # A prefix is made whole each time: only an empty directory, or one an earlier --from made.
  if [ -f "$prefix/.vae_ddp-prefix" ]; then
    find "$prefix" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  elif [ -n "$(ls -A "$prefix")" ]; then
    say "--prefix $prefix: not empty, and not made by launch/setup --from; name a new directory"
    exit 2
  fi
  echo "made by vae_ddp's launch/setup --from $dir; --from empties and remakes it" >"$prefix/.vae_ddp-prefix"
  (cd "$dir" && grep -v '^#' MANIFEST | awk '{print $3 "  " $4}' | sha256sum --check --quiet) ||
    { say "--from $dir: files do not match its MANIFEST (copy the folder again)"; exit 2; }
  say "unpacking $(grep -c '^[^#].* debs/' "$dir/MANIFEST") packages into $prefix"
  for deb in "$dir"/debs/*.deb; do deb_tar "$deb" data -x -C "$prefix" || { say "cannot unpack $deb"; exit 1; }; done
  triple="$(cd "$prefix/usr/lib" && ls -d ./*-linux-gnu* 2>/dev/null | head -1 | cut -c3-)"
  merge_usr "$prefix"
  link_alternatives "$dir" "$prefix"
  link_mpi_programs "$prefix"
  keep_system_libraries "$prefix"
  relocate_pkgconfig "$prefix"
  write_env "$prefix" "${triple:-$(uname -m)-linux-gnu}"
  say "wrote $prefix/env.sh"
}

# setup --from: install, then MNIST from DIR and the build against TORCH_DIR (or DIR's libtorch).
offline_build() {
  local dir="" prefix="" nccl=() config found=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) dir="${2:-}"; shift 2 || offline_usage ;;
      --prefix) prefix="${2:-}"; shift 2 || offline_usage ;;
      *) say "unknown option for --from: $1"; offline_usage ;;
    esac
  done
  [ -n "$dir" ] && [ -n "$prefix" ] || offline_usage
  # The libtorch first, before minutes of unpacking.
  if [ -n "${TORCH_DIR:-}" ]; then
    for config in "$TORCH_DIR"/{,Torch/,share/cmake/Torch/}TorchConfig.cmake; do
      if [ -f "$config" ]; then found=1; fi
    done
    [ $found = 1 ] || { say "TORCH_DIR=$TORCH_DIR: no TorchConfig.cmake there (a pip PyTorch's: $TORCH_HINT)"; exit 2; }
    # A pip PyTorch's NCCL (the nvidia-nccl wheel beside it), so vae_ddp and libtorch load the same one.
    if [ -d "$TORCH_DIR/../../../nvidia/nccl" ]; then nccl=(-DNCCL_ROOT="$(cd "$TORCH_DIR/../../../nvidia/nccl" && pwd)"); fi
  elif ! grep -q '^libtorch-dev ' "$dir/MANIFEST" 2>/dev/null; then
    say "name a libtorch: TORCH_DIR=<its cmake dir> (a pip PyTorch's: $TORCH_HINT), or make the folder with --with-libtorch"
    exit 2
  fi
  install_from "$dir" "$prefix"
  prefix="$(cd "$prefix" && pwd)"
  # shellcheck disable=SC1091
  source "$prefix/env.sh"
  VAE_MNIST_SOURCE="$dir/mnist" fetch_mnist
  # TORCH_DIR's libtorch, else Debian's from the folder (env.sh puts the prefix on CMAKE_PREFIX_PATH).
  configure_and_build "$BUILD_DIR" "${TORCH_DIR:-}" "${nccl[@]}"
  say "built $BUILD_DIR/vae_ddp; before running it: source $prefix/env.sh"
}
