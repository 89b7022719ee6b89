# Arena tests (included by CMakeLists.txt): the sub-allocator, offload and
# restore and their copy plans (test_copy_plan), pins and fork (test_pin_fork), the randomized stress test and two processes sharing a device
# (test_arena); the C ABI of libacb_alloc.so (test_alloc_c_abi).
acb_add_test(test_arena GPU_CASES
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/test_arena.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_copy_plan.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_offload.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_pin_fork.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_stress_arena.cpp
  LIBS acb_alloc)

acb_add_test(test_alloc_c_abi
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_alloc_c_abi.cpp
  LIBS acb_alloc_shared)
target_compile_definitions(test_alloc_c_abi PRIVATE ACB_ALLOC_SO="$<TARGET_FILE:acb_alloc_shared>")
