# The libuv and GLib adapters (S4): src/adapters/uv.c and glib.c, each
# built only when pkg-config finds its library (Debian libuv1-dev,
# libglib2.0-dev; ./dev installs both). Each gives
#   - a shared library libcurfew-uv / libcurfew-glib (linked with libcurfew)
#     and a static one of the same name, installed;
#   - a pkg-config module curfew-uv / curfew-glib (Requires: curfew and the
#     event library), installed;
#   - an example: curfew-uv-echo (examples/uv), curfew-glib-ticker
#     (examples/glib);
#   - its half of test_adapters (tests/adapters): the sources test
#     CURFEW_TEST_UV / CURFEW_TEST_GLIB and exit 77 (CTest: skipped) when
#     the library was not found.
# Included at the end of CMakeLists.txt, after test_adapters is made.

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(LIBUV QUIET IMPORTED_TARGET libuv)
  pkg_check_modules(GLIB QUIET IMPORTED_TARGET glib-2.0)
endif()

# curfew_adapter(NAME SOURCE PC_TARGET EXAMPLE_NAME EXAMPLE_SOURCE)
function(curfew_adapter name src dep example example_src)
  add_library(curfew_${name}_obj OBJECT ${src})
  target_include_directories(curfew_${name}_obj PRIVATE
    ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(curfew_${name}_obj PRIVATE ${dep})

  add_library(curfew-${name} SHARED $<TARGET_OBJECTS:curfew_${name}_obj>)
  add_library(curfew-${name}-static STATIC
              $<TARGET_OBJECTS:curfew_${name}_obj>)
  target_link_libraries(curfew-${name} PUBLIC curfew ${dep})
  target_link_libraries(curfew-${name}-static PUBLIC curfew_static ${dep})
  set_target_properties(curfew-${name} PROPERTIES
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
  set_target_properties(curfew-${name}-static PROPERTIES
    OUTPUT_NAME curfew-${name})
  install(TARGETS curfew-${name} curfew-${name}-static
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  configure_file(cmake/curfew-${name}.pc.in curfew-${name}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/curfew-${name}.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

  add_executable(${example} ${example_src})
  target_link_libraries(${example} PRIVATE curfew-${name}-static
                        Threads::Threads)

  if(TARGET test_adapters)
    string(TOUPPER ${name} up)
    target_link_libraries(test_adapters PRIVATE curfew-${name}-static)
    target_compile_definitions(test_adapters PRIVATE
      CURFEW_TEST_${up}=1
      CURFEW_TEST_${up}_EXAMPLE="$<TARGET_FILE:${example}>")
    add_dependencies(test_adapters ${example})
  endif()
endfunction()

if(LIBUV_FOUND)
  curfew_adapter(uv src/adapters/uv.c PkgConfig::LIBUV curfew-uv-echo
                 examples/uv/echo.c)
else()
  message(STATUS "curfew-uv skipped: libuv not found by pkg-config "
                 "(Debian: apt-get install libuv1-dev)")
endif()

if(GLIB_FOUND)
  curfew_adapter(glib src/adapters/glib.c PkgConfig::GLIB curfew-glib-ticker
                 examples/glib/ticker.c)
else()
  message(STATUS "curfew-glib skipped: glib-2.0 not found by pkg-config "
                 "(Debian: apt-get install libglib2.0-dev)")
endif()

if(BUILD_TESTING AND (LIBUV_FOUND OR GLIB_FOUND))
  # The installed libraries and .pc files build the examples outside the
  # tree, and these shut down cleanly on SIGTERM.
  add_test(NAME adapters.install_pkgconfig
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/adapters/install.sh
                   ${CMAKE_BINARY_DIR} ${CMAKE_CURRENT_SOURCE_DIR}
                   "${CMAKE_C_COMPILER}" "${san}")
  set_tests_properties(adapters.install_pkgconfig PROPERTIES TIMEOUT 120)
endif()

if(TARGET test_adapters)
  # A test of an adapter whose library is missing exits 77: skipped.
  get_property(all_tests DIRECTORY PROPERTY TESTS)
  foreach(t ${all_tests})
    if(t MATCHES "^adapters\\.")
      set_tests_properties(${t} PROPERTIES SKIP_RETURN_CODE 77)
    endif()
  endforeach()
endif()
