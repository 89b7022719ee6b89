# Driver tests (included by CMakeLists.txt): the conformance suite run against
# every available driver, the emulated device's own behaviour (shared capacity
# across processes, crash reclamation, faults on unmapped memory), and the
# CUDA driver against a fake libcuda (fake_libcuda.cpp) so it is exercised
# without a GPU.
add_library(acb_fake_libcuda MODULE ${CMAKE_CURRENT_LIST_DIR}/fake_libcuda.cpp)
target_include_directories(acb_fake_libcuda SYSTEM PRIVATE ${ACB_CUDA_INCLUDE_DIR})
acb_target_warnings(acb_fake_libcuda)
# The same without cuMemcpyBatchAsync, as a libcuda older than CUDA 13.
add_library(acb_fake_libcuda_nobatch MODULE ${CMAKE_CURRENT_LIST_DIR}/fake_libcuda.cpp)
target_include_directories(acb_fake_libcuda_nobatch SYSTEM PRIVATE ${ACB_CUDA_INCLUDE_DIR})
target_compile_definitions(acb_fake_libcuda_nobatch PRIVATE FAKE_CUDA_NO_BATCH)
acb_target_warnings(acb_fake_libcuda_nobatch)

acb_add_test(test_drivers GPU_CASES
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/driver_conformance.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_parse.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_conformance.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_emulated.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_emulated_parts.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_cuda.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_driver_stress.cpp
  LIBS acb_alloc)
add_dependencies(test_drivers acb_fake_libcuda acb_fake_libcuda_nobatch)
target_compile_definitions(test_drivers PRIVATE ACB_FAKE_LIBCUDA="$<TARGET_FILE:acb_fake_libcuda>"
  ACB_FAKE_LIBCUDA_NOBATCH="$<TARGET_FILE:acb_fake_libcuda_nobatch>")
