# curfew-bench (bench/*.c): the benchmarks that ./dev bench runs and
# docs/BENCHMARKS.md reports. Built with the library, never installed; it
# uses only the public headers.
file(GLOB CURFEW_BENCH_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench/*.c)
if(CURFEW_BENCH_SOURCES)
  add_executable(curfew-bench ${CURFEW_BENCH_SOURCES})
  target_link_libraries(curfew-bench PRIVATE curfew_static Threads::Threads)
endif()
