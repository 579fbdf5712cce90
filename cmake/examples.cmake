# Examples that need more than the library.
#
# curfew-history (examples/history/history.c) keeps a browsing history in
# SQLite through a curfew_queue: contract item I5, "curfew_queue runs
# operations one at a time in order on the I/O thread; curfew_queue_close
# puts the close at the end of the queue and the queue's blocker finishes
# after the close ran: no operation is cut in half by shutdown". Its tests
# check that every insert curfew_queue_post() accepted is in the database
# after the shutdown, sqlite3_close having run as the queue's close.
#
# It needs SQLite (pkg-config module sqlite3, Debian libsqlite3-dev, which
# ./dev installs); without it the example and its tests are skipped.

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(SQLITE3 QUIET IMPORTED_TARGET sqlite3)
endif()
if(NOT SQLITE3_FOUND)
  message(STATUS "curfew-history skipped: sqlite3 not found by pkg-config "
                 "(Debian: apt-get install libsqlite3-dev)")
  return()
endif()

add_executable(curfew-history examples/history/history.c)
target_link_libraries(curfew-history PRIVATE curfew_static
                      PkgConfig::SQLITE3)

if(BUILD_TESTING)
  # Each test runs the example on a fresh database in a temporary directory
  # (removed afterwards) and passes when it exits 0: the rows the database
  # gained equal the inserts curfew_queue_post() accepted (I5). The
  # shutdown record stays in the build directory for a look.
  set(curfew_history_run [=[d=$(mktemp -d) || exit 1; "$0" --db "$d/history.db" "$@"; rc=$?; rm -rf "$d"; exit $rc]=])

  # The shutdown begins (SIGTERM to itself) in the middle of a burst: the
  # producers are still posting and the queue still holds inserts when the
  # close is put at its end.
  add_test(NAME io.history_burst
           COMMAND sh -c "${curfew_history_run}" $<TARGET_FILE:curfew-history>
                   --inserts 100000000 --signal-after-ms 200
                   --record ${CMAKE_CURRENT_BINARY_DIR}/history_burst.json)

  # Every insert is posted, then the last producer begins a normal
  # shutdown.
  add_test(NAME io.history_complete
           COMMAND sh -c "${curfew_history_run}" $<TARGET_FILE:curfew-history>
                   --inserts 5000
                   --record ${CMAKE_CURRENT_BINARY_DIR}/history_complete.json)

  set_tests_properties(io.history_burst io.history_complete
                       PROPERTIES TIMEOUT 120)
  # And each shutdown began the way its test means it to.
  set_tests_properties(io.history_burst PROPERTIES
                       FAIL_REGULAR_EXPRESSION "every insert was posted")
  set_tests_properties(io.history_complete PROPERTIES
                       FAIL_REGULAR_EXPRESSION "\\(SIG[A-Z]+\\)")
endif()
