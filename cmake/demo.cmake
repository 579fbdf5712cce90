# curfew-demo (examples/demo/): what ./dev demo runs.
#
# A browser process and its tab processes shut down through the browser's
# phases, with workers, SQLite history, debounced and atomic writes,
# telemetry and lifetime rules; afterwards the demo checks against the
# files on disk that nothing was lost. It is installed with the library.
#
# It needs SQLite (pkg-config module sqlite3, Debian libsqlite3-dev, which
# ./dev installs); without it the demo and its tests are skipped.

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(SQLITE3 QUIET IMPORTED_TARGET sqlite3)
endif()
if(NOT SQLITE3_FOUND)
  message(STATUS "curfew-demo skipped: sqlite3 not found by pkg-config "
                 "(Debian: apt-get install libsqlite3-dev)")
  return()
endif()

file(GLOB curfew_demo_sources CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_SOURCE_DIR}/examples/demo/*.c)
add_executable(curfew-demo ${curfew_demo_sources})
target_link_libraries(curfew-demo PRIVATE curfew_static PkgConfig::SQLITE3
                      Threads::Threads)
# Call sites in its reports read examples/demo/tab.c, not a build machine's
# absolute path.
include(CheckCCompilerFlag)
check_c_compiler_flag(-fmacro-prefix-map=a=b CURFEW_HAVE_MACRO_PREFIX_MAP)
if(CURFEW_HAVE_MACRO_PREFIX_MAP)
  target_compile_options(curfew-demo PRIVATE
                         -fmacro-prefix-map=${CMAKE_CURRENT_SOURCE_DIR}/=)
endif()
install(TARGETS curfew-demo RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

if(BUILD_TESTING)
  # Each test runs the demo in one mode (tests/demo/check.sh) and checks its
  # invariants from its output and the files it left: verification all
  # "ok" and exit 0 (normal, crash_child), the hang report naming the right
  # blocker (hang_*), --serial clearly slower than the default with the
  # same work. The files stay in the build directory, under demo-tests/.
  find_program(CURFEW_PYTHON3 python3)
  if(NOT CURFEW_PYTHON3)
    message(STATUS "curfew-demo tests skipped: python3 not found")
    return()
  endif()
  foreach(mode normal crash_child hang_child hang_worker hang_io
               serial_slower)
    add_test(NAME demo.${mode}
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/demo/check.sh
                     ${mode} $<TARGET_FILE:curfew-demo>
                     ${CMAKE_CURRENT_BINARY_DIR}/demo-tests/${mode}
                     ${CURFEW_PYTHON3})
    set_tests_properties(demo.${mode} PROPERTIES TIMEOUT 120)
  endforeach()
endif()
