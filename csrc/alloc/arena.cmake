# The arena (included by CMakeLists.txt): caching sub-allocator, segments,
# offload/restore to pinned host backups, stats and validate(), plus
# libacb_alloc.so (target acb_alloc_shared): all of acb_alloc, the process
# registry of arenas and the C ABI that torch's CUDAPluggableAllocator loads.
target_sources(acb_alloc PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/block_pool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/va_space.cpp
  ${CMAKE_CURRENT_LIST_DIR}/host_backup_pool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/copy_plan.cpp
  ${CMAKE_CURRENT_LIST_DIR}/copy_engine.cpp
  ${CMAKE_CURRENT_LIST_DIR}/arena.cpp
  ${CMAKE_CURRENT_LIST_DIR}/arena_offload.cpp
  ${CMAKE_CURRENT_LIST_DIR}/arena_validate.cpp)

# One registry per process: it lives only in the shared library, so torch's
# loaded allocator and acb._C (which links this library) see the same arenas.
add_library(acb_alloc_shared SHARED
  ${CMAKE_CURRENT_LIST_DIR}/process_arenas.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pluggable_allocator.cpp)
set_target_properties(acb_alloc_shared PROPERTIES OUTPUT_NAME acb_alloc)
target_include_directories(acb_alloc_shared PUBLIC ${PROJECT_SOURCE_DIR}/csrc)
if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.24)
  target_link_libraries(acb_alloc_shared PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,acb_alloc>")
else()
  target_link_libraries(acb_alloc_shared PRIVATE -Wl,--whole-archive acb_alloc -Wl,--no-whole-archive)
endif()
target_link_libraries(acb_alloc_shared PUBLIC Threads::Threads ${CMAKE_DL_LIBS})
acb_target_warnings(acb_alloc_shared)
