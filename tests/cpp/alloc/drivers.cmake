# Driver tests (included by CMakeLists.txt): the conformance suite run against
# every available driver, and the emulated device's own behaviour (shared
# capacity across processes, crash reclamation, faults on unmapped memory).
acb_add_test(test_drivers
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_parse.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_conformance.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_emulated.cpp
  LIBS acb_alloc)
