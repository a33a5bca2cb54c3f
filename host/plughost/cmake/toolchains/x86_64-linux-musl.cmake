# CMake toolchain file: plugins for x86_64 Linux with musl (the official Alpine image).
#
#   cmake -S . -B build/cmake-linux-x86_64-musl \
#         -DCMAKE_TOOLCHAIN_FILE=host/plughost/cmake/toolchains/x86_64-linux-musl.cmake \
#         -Dplughost_DIR="$PWD/host/plughost/cmake"
#   (or: python build_plugins.py --target linux-x86_64-musl)
#
# Compiler: musl-gcc (Debian package musl-tools: this machine's gcc with musl's headers and
# libraries) when it is installed, else zig cc -target x86_64-linux-musl (see zig.cmake);
# -DPLUGHOST_USE_ZIG=ON picks zig anyway. Either way plugin.h's note says libc=musl (musl
# defines no __GLIBC__) and `plughost check --target linux-x86_64-musl` accepts the result.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES PLUGHOST_USE_ZIG)

if(NOT PLUGHOST_USE_ZIG)
  find_program(PLUGHOST_MUSL_GCC musl-gcc NO_CMAKE_FIND_ROOT_PATH)
endif()
if(PLUGHOST_MUSL_GCC AND NOT PLUGHOST_USE_ZIG)
  set(CMAKE_C_COMPILER "${PLUGHOST_MUSL_GCC}")
  # musl-gcc's own prefix (Debian: /usr/lib/musl, headers in /usr/include/<triple>-musl);
  # never this machine's glibc libraries and headers.
  set(CMAKE_FIND_ROOT_PATH "/usr/lib/musl" "/usr/local/musl")
  set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
  set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
else()
  set(PLUGHOST_ZIG_TRIPLE x86_64-linux-musl)
  include("${CMAKE_CURRENT_LIST_DIR}/zig.cmake")
endif()
