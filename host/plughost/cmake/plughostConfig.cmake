# plughostConfig.cmake - the CMake package for building plughost plugins.
#
# Out-of-tree plugin projects use it like this:
#
#   cmake_minimum_required(VERSION 3.16)
#   project(myplugin C)
#   find_package(plughost 1.2 REQUIRED)   # the oldest plugin ABI (PH_ABI_MAJOR.MINOR) the
#                                         # plugin needs: here 1.2, for ph_require_single_header
#   plughost_add_plugin(myplugin SOURCES myplugin.c [LIBRARIES ...] [INCLUDE_DIRS ...])
#
# and point CMake at the package with one of
#   cmake -Dplughost_DIR="$(plughost info --cmake-dir)" ...
#   cmake -DCMAKE_PREFIX_PATH=<site-packages or install prefix> ...
#
# The package is found in two layouts:
#   inside the Python package  plughost/cmake/plughostConfig.cmake
#                              plughost/include/plugin.h
#   installed by CMake         <prefix>/lib/cmake/plughost/plughostConfig.cmake
#                              <prefix>/include/plughost/plugin.h
#
# What it provides:
#   plughost::abi                   INTERFACE IMPORTED target carrying plugin.h's include dir
#   plughost_add_plugin(<name> ...) a MODULE library <name>.so, see below
#   PLUGHOST_INCLUDE_DIR            the folder holding plugin.h
#   PLUGHOST_ABI_VERSION            the header's ABI, e.g. "1.2", read from plugin.h
#   PLUGHOST_PACKAGE_VERSION        the plughost release this package came with
#   PLUGHOST_SANITIZE               cache option: build plugins with ASan + UBSan
#   Threads::Threads                the platform's threads library, for LIBRARIES
#
# The package version checked by find_package() is the ABI version (see
# plughostConfigVersion.cmake): a plugin that asks for 1.x gets any 1.y header with y >= x.

include_guard(GLOBAL)

set(PLUGHOST_PACKAGE_VERSION "0.1.0")

# --- plugin.h ----------------------------------------------------------------------------
find_path(PLUGHOST_INCLUDE_DIR
  NAMES plugin.h
  PATHS "${CMAKE_CURRENT_LIST_DIR}/../include"            # Python package layout
        "${CMAKE_CURRENT_LIST_DIR}/../../../include/plughost" # CMake install layout
  NO_DEFAULT_PATH NO_CMAKE_FIND_ROOT_PATH)
if(NOT PLUGHOST_INCLUDE_DIR)
  set(plughost_FOUND FALSE)
  set(plughost_NOT_FOUND_MESSAGE
      "plughost: plugin.h was not found next to ${CMAKE_CURRENT_LIST_FILE} "
      "(looked in ../include and ../../../include/plughost); the package is incomplete")
  return()
endif()
get_filename_component(PLUGHOST_INCLUDE_DIR "${PLUGHOST_INCLUDE_DIR}" ABSOLUTE)

file(STRINGS "${PLUGHOST_INCLUDE_DIR}/plugin.h" _plughost_abi_lines
     REGEX "^#define PH_ABI_(MAJOR|MINOR) [0-9]+")
set(_plughost_abi_major "")
set(_plughost_abi_minor "")
foreach(_line IN LISTS _plughost_abi_lines)
  if(_line MATCHES "^#define PH_ABI_MAJOR ([0-9]+)")
    set(_plughost_abi_major "${CMAKE_MATCH_1}")
  elseif(_line MATCHES "^#define PH_ABI_MINOR ([0-9]+)")
    set(_plughost_abi_minor "${CMAKE_MATCH_1}")
  endif()
endforeach()
set(PLUGHOST_ABI_VERSION "${_plughost_abi_major}.${_plughost_abi_minor}")
unset(_plughost_abi_lines)
unset(_plughost_abi_major)
unset(_plughost_abi_minor)

set_property(GLOBAL PROPERTY PLUGHOST_INCLUDE_DIR "${PLUGHOST_INCLUDE_DIR}")

if(NOT TARGET plughost::abi)
  add_library(plughost::abi INTERFACE IMPORTED)
  set_target_properties(plughost::abi PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${PLUGHOST_INCLUDE_DIR}")
endif()

# Plugins run inside a multi-threaded host: make the threads library available.
if(NOT TARGET Threads::Threads)
  set(THREADS_PREFER_PTHREAD_FLAG ON)
  include(CMakeFindDependencyMacro)
  find_dependency(Threads)
endif()

option(PLUGHOST_SANITIZE
  "Build plugins with -fsanitize=address,undefined (load them with libasan preloaded)"
  OFF)

# --- plughost_add_plugin ------------------------------------------------------------------
#
#   plughost_add_plugin(<name>
#                       SOURCES <file>...
#                       [LIBRARIES <lib or target>...]
#                       [INCLUDE_DIRS <dir>...])
#
# Creates the MODULE library target <name> whose file is <name>.so (no "lib" prefix):
# C11 without extensions, -Wall -Wextra -Werror, hidden visibility (only the entry that
# PH_PLUGIN_DEFINE marks is exported), linked with -Wl,--no-undefined so that a plugin
# never depends on a host symbol. With PLUGHOST_SANITIZE ON it also gets
# -fsanitize=address,undefined -fno-omit-frame-pointer and links the sanitizer runtimes
# as shared libraries, so --no-undefined still holds.
#
# Every plugin is recorded in the global property PLUGHOST_PLUGINS (target names).
function(plughost_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES;LIBRARIES;INCLUDE_DIRS")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR
      "plughost_add_plugin(${name}): unexpected arguments: ${arg_UNPARSED_ARGUMENTS} "
      "(expected SOURCES, LIBRARIES, INCLUDE_DIRS)")
  endif()
  if(NOT arg_SOURCES)
    message(FATAL_ERROR "plughost_add_plugin(${name}): SOURCES is required")
  endif()
  if(NOT name MATCHES "^[a-z0-9_]+$")
    message(FATAL_ERROR
      "plughost_add_plugin(${name}): a plugin name is made of [a-z0-9_] only "
      "(it is the <plugin> part of the type ids)")
  endif()

  get_property(_inc GLOBAL PROPERTY PLUGHOST_INCLUDE_DIR)

  add_library(${name} MODULE ${arg_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    SUFFIX ".so"
    C_STANDARD 11
    C_STANDARD_REQUIRED ON
    C_EXTENSIONS OFF
    C_VISIBILITY_PRESET hidden
    POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${name} PRIVATE "${_inc}" ${arg_INCLUDE_DIRS})
  target_compile_options(${name} PRIVATE -Wall -Wextra -Werror)
  if(arg_LIBRARIES)
    target_link_libraries(${name} PRIVATE ${arg_LIBRARIES})
  endif()

  if(PLUGHOST_SANITIZE)
    set(_san -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_compile_options(${name} PRIVATE ${_san})
    target_link_options(${name} PRIVATE ${_san})
    if(CMAKE_C_COMPILER_ID MATCHES "Clang")
      # clang leaves the runtime out of shared objects unless told otherwise.
      target_link_options(${name} PRIVATE -shared-libsan)
    endif()
  endif()
  # GCC (and clang with -shared-libsan) link libasan/libubsan into the .so as DT_NEEDED
  # entries, so every symbol still resolves at link time.
  target_link_options(${name} PRIVATE "LINKER:--no-undefined")

  set_property(GLOBAL APPEND PROPERTY PLUGHOST_PLUGINS ${name})
endfunction()
