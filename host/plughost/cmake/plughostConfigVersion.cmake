# plughostConfigVersion.cmake - which plughost packages satisfy find_package(plughost X.Y).
#
# The version a plugin asks for is the plugin ABI version (PH_ABI_MAJOR.PH_ABI_MINOR of
# plugin.h), with SameMajorVersion semantics, exactly the ABI's promise: a plugin written
# for 1.x builds against any 1.y header with y >= x, and never against 2.0.
# (The plughost release itself is PLUGHOST_PACKAGE_VERSION, set by plughostConfig.cmake.)

set(PACKAGE_VERSION "1.0")

# Read the version from the header this package carries, so it can never drift.
foreach(_plughost_h "${CMAKE_CURRENT_LIST_DIR}/../include/plugin.h"
                    "${CMAKE_CURRENT_LIST_DIR}/../../../include/plughost/plugin.h")
  if(EXISTS "${_plughost_h}")
    file(STRINGS "${_plughost_h}" _plughost_lines REGEX "^#define PH_ABI_(MAJOR|MINOR) [0-9]+")
    set(_plughost_major "")
    set(_plughost_minor "")
    foreach(_plughost_line IN LISTS _plughost_lines)
      if(_plughost_line MATCHES "^#define PH_ABI_MAJOR ([0-9]+)")
        set(_plughost_major "${CMAKE_MATCH_1}")
      elseif(_plughost_line MATCHES "^#define PH_ABI_MINOR ([0-9]+)")
        set(_plughost_minor "${CMAKE_MATCH_1}")
      endif()
    endforeach()
    if(NOT _plughost_major STREQUAL "" AND NOT _plughost_minor STREQUAL "")
      set(PACKAGE_VERSION "${_plughost_major}.${_plughost_minor}")
    endif()
    break()
  endif()
endforeach()
unset(_plughost_h)
unset(_plughost_lines)
unset(_plughost_line)
unset(_plughost_major)
unset(_plughost_minor)

if(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(PACKAGE_FIND_VERSION_RANGE)
  # find_package(plughost 1.0...<2.0)
  if((PACKAGE_FIND_VERSION_RANGE_MIN STREQUAL "INCLUDE"
        AND PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION_MIN)
     OR (PACKAGE_FIND_VERSION_RANGE_MIN STREQUAL "EXCLUDE"
        AND PACKAGE_VERSION VERSION_LESS_EQUAL PACKAGE_FIND_VERSION_MIN)
     OR (PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "INCLUDE"
        AND PACKAGE_VERSION VERSION_GREATER PACKAGE_FIND_VERSION_MAX)
     OR (PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "EXCLUDE"
        AND PACKAGE_VERSION VERSION_GREATER_EQUAL PACKAGE_FIND_VERSION_MAX))
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
else()
  string(REGEX MATCH "^[0-9]+" _plughost_have_major "${PACKAGE_VERSION}")
  if(PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION)
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  elseif(NOT _plughost_have_major STREQUAL PACKAGE_FIND_VERSION_MAJOR)
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
    if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
      set(PACKAGE_VERSION_EXACT TRUE)
    endif()
  endif()
  unset(_plughost_have_major)
endif()

# The header is architecture-independent (it records the target platform itself), so no
# CMAKE_SIZEOF_VOID_P check is needed here.
