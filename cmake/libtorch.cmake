# What it takes to build against each libtorch vae_ddp supports: Debian's libtorch-dev 1.13
# (CPU) and PyTorch's own libtorch 2.x (a pip wheel's torch/share/cmake, or the archive).
# Each work-around says which libtorch needs it and why; the top CMakeLists.txt calls these
# three in order: vae_find_torch() before anything else, vae_torch_after_deps() once OpenMP
# and oneDNN's headers are found, vae_torch_link_fixes(vae_base) on the lowest layer.

# find_package(Torch), and the C++ standard its headers need.
macro(vae_find_torch)
  # A CUDA libtorch compiles its CUDA flags for TORCH_CUDA_ARCH_LIST (it ignores
  # CMAKE_CUDA_ARCHITECTURES): Hopper (sm_90), plus PTX that newer GPUs JIT-compile.
  if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT DEFINED TORCH_CUDA_ARCH_LIST)
    set(TORCH_CUDA_ARCH_LIST "9.0+PTX")
  endif()
  # PyTorch's libtorch named by CMAKE_PREFIX_PATH must link its own libraries. Torch's config
  # looks them up with find_library, which prefers the system's lib directory, where
  # Debian's libtorch-dev 1.13 may also be, to the libtorch's own: search the latter first.
  foreach(prefix ${CMAKE_PREFIX_PATH})
    foreach(root "${prefix}/../.." "${prefix}")
      get_filename_component(root "${root}" ABSOLUTE)
      if(EXISTS "${root}/share/cmake/Torch/TorchConfig.cmake" AND EXISTS "${root}/lib")
        list(APPEND CMAKE_LIBRARY_PATH "${root}/lib")
      endif()
    endforeach()
  endforeach()
  find_package(Torch REQUIRED)
  # libtorch up to 2.11 is C++17; from 2.12 on its headers need C++20.
  if(Torch_VERSION VERSION_GREATER_EQUAL 2.12)
    set(CMAKE_CXX_STANDARD 20)
  else()
    set(CMAKE_CXX_STANDARD 17)
  endif()
  # A libtorch built with CUDA exports c10_cuda; then collectives use its current stream.
  if(TARGET c10_cuda OR TORCH_CUDA_LIBRARIES)
    set(VAE_TORCH_CUDA ON)
  endif()
endmacro()

# Needs OpenMP::OpenMP_CXX and DNNL_INCLUDE_DIR. Sets VAE_CPU_GEMM_USED (onednn | aten),
# VAE_CPU_GEMM_SOURCE, DNNL_LIBRARY and VAE_SYSTEM_FIRST (an include directory).
macro(vae_torch_after_deps)
  # PyTorch's libtorch brings its own libgomp.so.1, which the process loads through
  # torch/lib whatever we link: link that same copy, so build and run time agree.
  if(EXISTS "${TORCH_INSTALL_PREFIX}/lib/libgomp.so.1")
    set_target_properties(OpenMP::OpenMP_CXX PROPERTIES
      INTERFACE_LINK_LIBRARIES "${TORCH_INSTALL_PREFIX}/lib/libgomp.so.1;Threads::Threads")
  endif()
  # The CPU fast path's GEMMs (cpu_gemm.h): Debian's oneDNN where libtorch links that same
  # library (Debian's libtorch), else ATen's (at::mm, MKL in PyTorch's builds). PyTorch's
  # libtorch carries oneDNN 3.x inside libtorch_cpu and exports some of its template
  # instantiations (std::call_once helpers of the JIT GEMM kernels, among others); the
  # dynamic linker binds Debian's oneDNN 2.6 to those, and its GEMMs then fail ("could not
  # execute a primitive"). Such a libtorch ships its own oneapi/ headers: that is the sign.
  set(VAE_CPU_GEMM "AUTO" CACHE STRING "CPU fast path GEMMs: AUTO, onednn (Debian's libdnnl) or aten")
  if(VAE_CPU_GEMM STREQUAL "AUTO")
    set(VAE_CPU_GEMM_USED onednn)
    if(EXISTS "${TORCH_INSTALL_PREFIX}/include/oneapi/dnnl/dnnl.hpp")
      file(REAL_PATH "${TORCH_INSTALL_PREFIX}/include" torch_include)
      file(REAL_PATH "${DNNL_INCLUDE_DIR}" dnnl_include)
      if(NOT torch_include STREQUAL dnnl_include)
        set(VAE_CPU_GEMM_USED aten)
      endif()
    endif()
  else()
    set(VAE_CPU_GEMM_USED ${VAE_CPU_GEMM})
  endif()
  if(VAE_CPU_GEMM_USED STREQUAL "onednn")
    find_library(DNNL_LIBRARY dnnl REQUIRED)
    set(VAE_CPU_GEMM_SOURCE cpu_gemm.cpp)
  else()
    set(DNNL_LIBRARY "")
    set(VAE_CPU_GEMM_SOURCE cpu_gemm_aten.cpp)
  endif()
  # PyTorch's libtorch bundles fmt/ and oneapi/ headers in torch/include, which would shadow
  # the system's: Debian's fmt (which spdlog is built on) and oneDNN (the CPU fast path's
  # library). A directory of links to the system's copies, searched first (-I before
  # torch's -isystem), keeps each library with its own headers. "The system" includes the
  # environment's CMAKE_PREFIX_PATH (an offline install's env.sh); NO_CMAKE_PATH keeps out
  # the libtorch named by -DCMAKE_PREFIX_PATH.
  find_path(VAE_FMT_INCLUDE_DIR fmt/format.h PATHS /usr/include NO_CMAKE_PATH)
  set(VAE_SYSTEM_FIRST "${CMAKE_BINARY_DIR}/system-first-include")
  file(MAKE_DIRECTORY "${VAE_SYSTEM_FIRST}")
  file(CREATE_LINK "${VAE_FMT_INCLUDE_DIR}/fmt" "${VAE_SYSTEM_FIRST}/fmt" SYMBOLIC)
  file(CREATE_LINK "${DNNL_INCLUDE_DIR}/oneapi" "${VAE_SYSTEM_FIRST}/oneapi" SYMBOLIC)
endmacro()

# On the lowest layer, so that every target above inherits them.
function(vae_torch_link_fixes target)
  target_include_directories(${target} BEFORE PUBLIC "${VAE_SYSTEM_FIRST}")
  # PyTorch's libtorch.so exports parts of a newer libstdc++ that its toolchain linked in
  # statically (std::filesystem among them); when it comes before the system's libstdc++ in
  # the lookup order, our std::filesystem calls land in its copy and crash. Linking
  # libstdc++ first (its DT_NEEDED before libtorch's) makes the system's win. Harmless with
  # Debian's libtorch, which uses the system's libstdc++.
  target_link_options(${target} INTERFACE "LINKER:--push-state,--no-as-needed" -lstdc++ "LINKER:--pop-state")
endfunction()
