# libFuzzer targets (./dev fuzz, and the smoke run of ./dev test).
#
# With -DCURFEW_FUZZ=ON (clang only) every fuzz/<name>.c becomes one
# executable, fuzz_<name> (a file already called fuzz_x.c gives fuzz_x), built
# with -fsanitize=fuzzer,address,undefined and linked with its own copy of the
# library compiled with -fsanitize=fuzzer-no-link,address,undefined, so the
# fuzzer sees the library's coverage. fuzz_report also gets the curfew-report
# tool's sources but its main.c. With CURFEW_FUZZ OFF this file adds nothing.

option(CURFEW_FUZZ "Build the libFuzzer targets (needs clang)" OFF)
if(NOT CURFEW_FUZZ)
  return()
endif()

if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CURFEW_FUZZ needs clang (-DCMAKE_C_COMPILER=clang); "
                      "the compiler is ${CMAKE_C_COMPILER_ID}")
endif()
if(CURFEW_SANITIZE STREQUAL "thread")
  message(FATAL_ERROR "CURFEW_FUZZ cannot be combined with "
                      "CURFEW_SANITIZE=thread")
endif()

# A sanitizer report is a crash: UBSan must not print and carry on.
set(curfew_fuzz_common -fno-sanitize-recover=all -fno-omit-frame-pointer -g)

# The library as the fuzz targets see it. jsonr.c is taken even if the main
# list does not name it (yet): the targets parse what they write.
set(curfew_fuzz_sources ${CURFEW_SOURCES})
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/src/report/jsonr.c)
  list(APPEND curfew_fuzz_sources src/report/jsonr.c)
  list(REMOVE_DUPLICATES curfew_fuzz_sources)
endif()

add_library(curfew_fuzzlib STATIC ${curfew_fuzz_sources})
target_include_directories(curfew_fuzzlib
  PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_compile_options(curfew_fuzzlib PRIVATE
  -fsanitize=fuzzer-no-link,address,undefined ${curfew_fuzz_common})
target_link_libraries(curfew_fuzzlib PUBLIC Threads::Threads)

set(curfew_report_dir ${CMAKE_CURRENT_SOURCE_DIR}/tools/curfew-report)

file(GLOB curfew_fuzz_files CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/*.c)
foreach(src ${curfew_fuzz_files})
  get_filename_component(name ${src} NAME_WE)
  if(NOT name MATCHES "^fuzz_")
    set(name fuzz_${name})
  endif()
  add_executable(${name} ${src})
  if(name STREQUAL "fuzz_report" AND IS_DIRECTORY ${curfew_report_dir})
    file(GLOB tool_srcs CONFIGURE_DEPENDS ${curfew_report_dir}/*.c)
    list(REMOVE_ITEM tool_srcs ${curfew_report_dir}/main.c)
    target_sources(${name} PRIVATE ${tool_srcs})
    target_include_directories(${name} PRIVATE ${curfew_report_dir})
  endif()
  target_compile_options(${name} PRIVATE
    -fsanitize=fuzzer,address,undefined ${curfew_fuzz_common})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${name} PRIVATE curfew_fuzzlib)
endforeach()
