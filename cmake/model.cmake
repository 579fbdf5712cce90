# The Promela models of the channel handshakes (contract A6), checked with
# spin: one CTest entry model.<name> per model/<name>.pml, running
# `sh model/check.sh <name>` (exhaustive search; fails on any error, on an
# incomplete search or a tool failure).
#
# Only in the plain build (CURFEW_SANITIZE empty): spin's result does not
# depend on sanitizers, so the other builds need not repeat it. If spin is
# not installed the entries are still registered and fail, saying what to
# install, so that CI cannot skip the check silently.

if(NOT BUILD_TESTING OR NOT CURFEW_SANITIZE STREQUAL "")
  return()
endif()

file(GLOB curfew_models CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_SOURCE_DIR}/model/*.pml)
if(NOT curfew_models)
  return()
endif()

find_program(CURFEW_SPIN spin)

foreach(pml ${curfew_models})
  get_filename_component(name ${pml} NAME_WE)
  if(CURFEW_SPIN)
    add_test(NAME model.${name}
             COMMAND sh model/check.sh ${name}
             WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    # A model's search takes about a minute alone and three on a loaded
    # 2-core machine; the limit is there for a hung spin, not to time it.
    set_tests_properties(model.${name} PROPERTIES
      TIMEOUT 900
      ENVIRONMENT "SPIN=${CURFEW_SPIN};CC=${CMAKE_C_COMPILER}")
  else()
    string(CONCAT msg "model.${name}: spin not found, install the Debian "
                      "package spin (apt-get install spin) and reconfigure")
    add_test(NAME model.${name}
             COMMAND sh -c "echo '${msg}' >&2; exit 1")
    set_tests_properties(model.${name} PROPERTIES TIMEOUT 300)
  endif()
  set_tests_properties(model.${name} PROPERTIES LABELS model)
endforeach()
