# zig.cmake - shared by the toolchain files in this folder: makes `zig cc` CMake's C compiler.
#
# Not a toolchain file of its own: a toolchain file sets PLUGHOST_ZIG_TRIPLE (zig's target,
# e.g. aarch64-linux-musl) and includes this file. zig brings the C library of every target
# (musl, and glibc stubs of any version), so no sysroot is needed.
#
# zig is looked for, in this order, in
#   -DPLUGHOST_ZIG=/path/to/zig   (build_plugins.py passes the one of its own Python)
#   $ZIG
#   `zig` on PATH
#   the PyPI package ziglang (pip install ziglang) of python3 on PATH, or of $PLUGHOST_PYTHON
# and its absolute path is cached, so the build runs the same zig as the configure step.
#
# CMake wants one program as the compiler: CMAKE_C_COMPILER is the list "<zig>;cc" (CMake
# runs the first item with the second as its first argument, in every compile and link rule),
# and CMAKE_C_COMPILER_TARGET makes CMake add --target=<triple> to both.
# zig's first build for a target compiles that target's C library into zig's global cache
# (~/.cache/zig, or $ZIG_GLOBAL_CACHE_DIR): a minute or two, once.

if(NOT PLUGHOST_ZIG_TRIPLE)
  message(FATAL_ERROR "zig.cmake: set PLUGHOST_ZIG_TRIPLE (e.g. aarch64-linux-musl) before "
                      "including it; use one of the toolchain files next to it")
endif()

if(NOT PLUGHOST_ZIG AND DEFINED ENV{ZIG} AND NOT "$ENV{ZIG}" STREQUAL "")
  set(PLUGHOST_ZIG "$ENV{ZIG}")
endif()
if(NOT PLUGHOST_ZIG)
  find_program(_plughost_zig_on_path zig NO_CMAKE_FIND_ROOT_PATH)
  if(_plughost_zig_on_path)
    set(PLUGHOST_ZIG "${_plughost_zig_on_path}")
  endif()
  unset(_plughost_zig_on_path CACHE)
endif()
if(NOT PLUGHOST_ZIG)
  if(DEFINED ENV{PLUGHOST_PYTHON} AND NOT "$ENV{PLUGHOST_PYTHON}" STREQUAL "")
    set(_plughost_python "$ENV{PLUGHOST_PYTHON}")
  else()
    find_program(_plughost_python NAMES python3 python NO_CMAKE_FIND_ROOT_PATH)
  endif()
  if(_plughost_python)
    execute_process(
      COMMAND "${_plughost_python}" -c
              "import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))"
      OUTPUT_VARIABLE _plughost_zig_from_pypi OUTPUT_STRIP_TRAILING_WHITESPACE
      ERROR_QUIET RESULT_VARIABLE _plughost_rc)
    if(_plughost_rc EQUAL 0 AND EXISTS "${_plughost_zig_from_pypi}")
      set(PLUGHOST_ZIG "${_plughost_zig_from_pypi}")
    endif()
  endif()
  unset(_plughost_python CACHE)
  unset(_plughost_python)
endif()
if(NOT PLUGHOST_ZIG OR NOT EXISTS "${PLUGHOST_ZIG}")
  message(FATAL_ERROR
    "zig is needed to build for ${PLUGHOST_ZIG_TRIPLE} and was not found: install the PyPI "
    "package ziglang (`./dev setup` does; pip install ziglang), or pass -DPLUGHOST_ZIG=<zig>")
endif()
set(PLUGHOST_ZIG "${PLUGHOST_ZIG}" CACHE FILEPATH "the zig program used as the C compiler")
# try_compile() projects read this file again: hand them the same zig.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES PLUGHOST_ZIG)

set(CMAKE_C_COMPILER "${PLUGHOST_ZIG}" cc)
set(CMAKE_C_COMPILER_TARGET "${PLUGHOST_ZIG_TRIPLE}")

# Search for headers, libraries and packages only under CMAKE_FIND_ROOT_PATH, never in this
# machine's /usr: a library built for the host must not be linked into a target's plugin.
# zig has no sysroot, so nothing is found unless the user adds a folder built for the target
# (-DCMAKE_FIND_ROOT_PATH=<prefix>).
if(NOT CMAKE_FIND_ROOT_PATH)
  set(CMAKE_FIND_ROOT_PATH "${CMAKE_CURRENT_LIST_DIR}/no-sysroot-${PLUGHOST_ZIG_TRIPLE}")
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
