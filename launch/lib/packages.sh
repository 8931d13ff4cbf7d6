# The Debian packages vae_ddp builds, runs and is tested with, by role; written once, read by
# launch/setup (apt-get on this machine) and launch/lib/offline.sh (the offline download).

# What a target brings itself (a compiler, CMake, ninja): installed here, never downloaded.
TOOLCHAIN_PACKAGES=(g++ cmake ninja-build)

# Debian's CPU libtorch (BLAS through OpenBLAS; without it, the much slower netlib reference BLAS).
TORCH_PACKAGES=(libtorch-dev libopenblas0-openmp)

# What building, testing and running vae_ddp needs beyond a libtorch and a toolchain.
CORE_PACKAGES=(
  pkg-config
  libdnnl-dev                            # oneDNN: the CPU fast path's GEMMs
  libopenmpi-dev openmpi-bin             # MPI ranks
  libcxxopts-dev libspdlog-dev libyaml-cpp-dev libgtest-dev
  libpng-dev zlib1g-dev libssl-dev       # PNG grids, .gz MNIST, MD5 of the data files
  libboost-dev                           # Boost.CRC: the CRC32C of TensorBoard's record framing
)

# Optional features: CMake turns each off, with a message, when its library is absent.
FEATURE_PACKAGES=(
  libcairo2-dev fonts-dejavu-core        # loss curves and latent maps (cairo), their labels' font
  libcurl4-openssl-dev ca-certificates   # --download (the MNIST mirrors over https)
)

# Only this machine's extras: Fashion-MNIST, the parity test's PyTorch (same libtorch), the
# venv of PyTorch 2.11 from PyPI (VAE_PYTORCH=1).
HOST_PACKAGES=(dataset-fashion-mnist python3-torch python3-venv)

# Only the test suite: a real Slurm (tests/slurm), clang for the libFuzzer targets
# (tests/fuzz), an independent reader of TensorBoard event files (protobuf, CRC32C), and
# debootstrap and ip (iproute2) for the offline-install test's minimal root and its namespace, and
# patchelf and xz for the packed GPU check (launch/gpu-check).
TEST_PACKAGES=(slurm-wlm munge clang procps python3-protobuf python3-crc32c debootstrap iproute2 patchelf xz-utils)
