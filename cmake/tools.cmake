# The curfew-report tool (R3) and its tests.
#
# curfew-report reads a shutdown record (R2), hang report (R1) or state
# report and prints a timeline (show), converts it to the Chrome trace-event
# format (trace) or draws an SVG timeline (svg). It links curfew_static and
# uses the library's internal JSON reader (src/report/jsonr.c).
#
# Tests: tool.<case>, each one run of tests/tool/run.sh; curfew-tool-gen
# (tests/tool/gen.c) produces real documents with the library at test time.

set(curfew_tool_dir ${CMAKE_CURRENT_SOURCE_DIR}/tools/curfew-report)
file(GLOB curfew_tool_sources CONFIGURE_DEPENDS ${curfew_tool_dir}/*.c)

add_executable(curfew-report ${curfew_tool_sources})
# The JSON reader is part of the library; take it directly only while the
# library's source list does not name it.
if(NOT "src/report/jsonr.c" IN_LIST CURFEW_SOURCES
   AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/src/report/jsonr.c)
  target_sources(curfew-report PRIVATE
                 ${CMAKE_CURRENT_SOURCE_DIR}/src/report/jsonr.c)
endif()
target_include_directories(curfew-report PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/src ${curfew_tool_dir})
target_link_libraries(curfew-report PRIVATE curfew_static)
install(TARGETS curfew-report RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

if(BUILD_TESTING)
  add_executable(curfew-tool-gen tests/tool/gen.c)
  target_link_libraries(curfew-tool-gen PRIVATE curfew_static
                        Threads::Threads)

  # One entry per case of tests/tool/run.sh (R3, R4).
  set(curfew_tool_cases
      show_record show_hang show_state show_hung_record show_width stdin
      trace_record trace_hang trace_state
      svg_record svg_hang svg_state
      usage missing_file directory empty garbage truncated deep
      wrong_type wrong_version bad_fields huge_numbers weird_names
      invalid_utf8 children)
  foreach(c ${curfew_tool_cases})
    add_test(NAME tool.${c}
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/tool/run.sh ${c}
                     $<TARGET_FILE:curfew-report>
                     $<TARGET_FILE:curfew-tool-gen>
                     ${CMAKE_CURRENT_SOURCE_DIR}/tests/tool)
    set_tests_properties(tool.${c} PROPERTIES TIMEOUT 60)
  endforeach()
endif()
