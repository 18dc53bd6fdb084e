# Fix-ups for building CMakeLists.txt against the ROS 2 PyPI wheels (the pip path only).
#
# scripts/build_interfaces.py passes this file as CMAKE_PROJECT_INCLUDE, so CMake runs it right
# after project(); colcon builds never see it.
#
# Why: the wheels were built on a manylinux image, and their exported
# `<pkg>::<pkg>__rosidl_generator_py` targets (std_msgs, geometry_msgs, sensor_msgs, ...) carry
# that image's Python and NumPy header directories in INTERFACE_INCLUDE_DIRECTORIES, e.g.
#   /opt/python/cp311-cp311/include/python3.11
#   /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
# Linking our generated Python extension against those targets then fails at generate time with
#   Imported target "std_msgs::std_msgs__rosidl_generator_py" includes non-existent path ...
# The fix: once the whole top-level directory has been processed (all find_package() calls done,
# before generation), replace every such non-existent Python / NumPy include directory of every
# imported target by the headers of the interpreter CMake found (Python3_INCLUDE_DIRS,
# Python3_NumPy_INCLUDE_DIRS). Existing directories are left untouched. Anything else that does
# not exist is left in place so that CMake still reports it.

function(_semnerf_replace_wheel_python_include_dirs)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_patched "")
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new_dirs "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(NOT _dir MATCHES "^\\$<" AND NOT EXISTS "${_dir}")
        if(_dir MATCHES "/numpy/(_core/)?include$")
          if(NOT Python3_NumPy_INCLUDE_DIRS)
            message(FATAL_ERROR "wheel fix-up: ${_target} needs NumPy headers but "
              "find_package(Python3 ... NumPy) did not find them (is numpy installed?)")
          endif()
          list(APPEND _new_dirs ${Python3_NumPy_INCLUDE_DIRS})
          set(_changed TRUE)
          continue()
        elseif(_dir MATCHES "/include/python3\\.[0-9]+[a-z]*$")
          if(NOT Python3_INCLUDE_DIRS)
            message(FATAL_ERROR "wheel fix-up: ${_target} needs the Python headers but "
              "find_package(Python3 ... Development.Module) did not find them")
          endif()
          list(APPEND _new_dirs ${Python3_INCLUDE_DIRS})
          set(_changed TRUE)
          continue()
        endif()
      endif()
      list(APPEND _new_dirs "${_dir}")
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _new_dirs)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new_dirs}")
      list(APPEND _patched ${_target})
    endif()
  endforeach()
  list(LENGTH _patched _count)
  if(_count GREATER 0)
    message(STATUS "wheel fix-up: pointed the build-machine Python/NumPy include dirs of "
      "${_count} imported targets at ${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
  endif()
endfunction()

# Second fix-up. rosidl_generator_py gives our `semnerf_ros__rosidl_generator_py` library the
# PUBLIC include directories ${Python3_INCLUDE_DIRS} and ${Python3_NumPy_INCLUDE_DIRS}, and exports
# the target. With the project's virtualenv inside the repository (.venv/), the NumPy headers lie
# inside the source tree, which CMake refuses in an exported target:
#   Target "semnerf_ros__rosidl_generator_py" INTERFACE_INCLUDE_DIRECTORIES property contains path
#   ".../.venv/lib/python3.11/site-packages/numpy/_core/include" which is prefixed in the source directory.
# Such directories are needed only to compile the extension here, so they are wrapped in
# $<BUILD_INTERFACE:...>: used for this build, left out of the exported CMake config (which the
# pip path does not deploy anyway).
function(_semnerf_keep_source_tree_include_dirs_out_of_exports)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_type ${_target} TYPE)
    if(_type STREQUAL "UTILITY")
      continue()
    endif()
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new_dirs "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      cmake_path(IS_PREFIX CMAKE_SOURCE_DIR "${_dir}" NORMALIZE _in_source)
      cmake_path(IS_PREFIX CMAKE_BINARY_DIR "${_dir}" NORMALIZE _in_binary)
      if(NOT _dir MATCHES "\\$<" AND _in_source AND NOT _in_binary)
        list(APPEND _new_dirs "$<BUILD_INTERFACE:${_dir}>")
        set(_changed TRUE)
      else()
        list(APPEND _new_dirs "${_dir}")
      endif()
    endforeach()
    if(_changed)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new_dirs}")
      message(STATUS "wheel fix-up: ${_target}: source-tree include dirs kept out of its export")
    endif()
  endforeach()
endfunction()

function(_semnerf_wheel_fixups)
  _semnerf_replace_wheel_python_include_dirs()
  _semnerf_keep_source_tree_include_dirs_out_of_exports()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _semnerf_wheel_fixups)
