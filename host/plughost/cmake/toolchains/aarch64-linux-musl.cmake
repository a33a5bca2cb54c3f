# CMake toolchain file: plugins for 64-bit ARM Linux with musl (the Alpine image on arm64).
#
#   cmake -S . -B build/cmake-linux-aarch64-musl \
#         -DCMAKE_TOOLCHAIN_FILE=host/plughost/cmake/toolchains/aarch64-linux-musl.cmake \
#         -Dplughost_DIR="$PWD/host/plughost/cmake"
#   (or: python build_plugins.py --target linux-aarch64-musl)
#
# Compiler: zig cc -target aarch64-linux-musl (PyPI ziglang; see zig.cmake). Debian has no
# musl cross compiler. `plughost check --target linux-aarch64-musl` accepts the result.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(PLUGHOST_ZIG_TRIPLE aarch64-linux-musl)
include("${CMAKE_CURRENT_LIST_DIR}/zig.cmake")
