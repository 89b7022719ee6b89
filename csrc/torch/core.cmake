# acb_torch_core (included from the top-level CMakeLists.txt, always): the
# torch-free core of the torch integration, compiled without torch headers so
# that it builds and is unit tested (tests/cpp/torch_core) without torch.
#   gate              safe-point gate: ops in flight, blocking while not holding
#   lease_controller  broker lease policy: acquire/restore, revoke at idle gap, evict
#   pluggable_hooks   record_stream/empty_cache callbacks on torch's CUDA pluggable allocator
# csrc/torch/CMakeLists.txt (ACB_BUILD_TORCH=ON) adds torch's compile flags
# to it and links it into acb._C.
add_library(acb_torch_core STATIC
  ${CMAKE_CURRENT_LIST_DIR}/device_sync.cpp
  ${CMAKE_CURRENT_LIST_DIR}/gate.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lease_controller.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pluggable_hooks.cpp)
set_target_properties(acb_torch_core PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(acb_torch_core PUBLIC ${PROJECT_SOURCE_DIR}/csrc)
# Only the headers of acb_alloc: in acb._C the code comes from libacb_alloc.so,
# so that the module and torch's pluggable allocator share one process arena.
# Users without torch (the unit tests) link acb_alloc themselves.
target_include_directories(acb_torch_core PUBLIC $<TARGET_PROPERTY:acb_alloc,INTERFACE_INCLUDE_DIRECTORIES>)
target_link_libraries(acb_torch_core PUBLIC acb_client Threads::Threads ${CMAKE_DL_LIBS})
acb_target_warnings(acb_torch_core)
