# CMake toolchain file: plugins for 64-bit ARM Linux with glibc (Debian, Ubuntu, ... on arm64).
#
#   cmake -S . -B build/cmake-linux-aarch64-gnu \
#         -DCMAKE_TOOLCHAIN_FILE=host/plughost/cmake/toolchains/aarch64-linux-gnu.cmake \
#         -Dplughost_DIR="$PWD/host/plughost/cmake"
#   (or: python build_plugins.py --target linux-aarch64-gnu)
#
# Compiler: aarch64-linux-gnu-gcc (Debian packages gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross, whose glibc is the one the note records, e.g. gnu-2.36) when it is
# installed, else zig cc -target aarch64-linux-gnu.<PLUGHOST_ZIG_GLIBC> (default 2.28, so the
# plugin runs on every glibc from 2.28 on; see zig.cmake); -DPLUGHOST_USE_ZIG=ON picks zig
# anyway. `plughost check --target linux-aarch64-gnu` accepts the result.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES PLUGHOST_USE_ZIG PLUGHOST_ZIG_GLIBC)

if(NOT PLUGHOST_USE_ZIG)
  find_program(PLUGHOST_AARCH64_GCC aarch64-linux-gnu-gcc NO_CMAKE_FIND_ROOT_PATH)
endif()
if(PLUGHOST_AARCH64_GCC AND NOT PLUGHOST_USE_ZIG)
  set(CMAKE_C_COMPILER "${PLUGHOST_AARCH64_GCC}")
  # Debian's cross sysroot; never this machine's x86_64 libraries and headers.
  set(CMAKE_FIND_ROOT_PATH "/usr/aarch64-linux-gnu")
  set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
  set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
else()
  if(NOT PLUGHOST_ZIG_GLIBC)
    set(PLUGHOST_ZIG_GLIBC 2.28)
  endif()
  set(PLUGHOST_ZIG_TRIPLE "aarch64-linux-gnu.${PLUGHOST_ZIG_GLIBC}")
  include("${CMAKE_CURRENT_LIST_DIR}/zig.cmake")
endif()
