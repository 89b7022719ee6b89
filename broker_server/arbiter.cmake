# acb_arbiter: the broker's policy, no I/O (see arbiter.h).
#   arbiter.cpp          client events (hello, acquire, release, residency, tick)
#   arbiter_admin.cpp    devices, priority, quota, quantum
#   arbiter_inspect.cpp  snapshot, timeline, next_wakeup, validate
#   arbiter_core.cpp     scheduling steps shared by the events (arbiter_state.h)
#   arbiter_gang.cpp     gang leases: the ranks of one job granted together
#   policy_queue.*       priority classes, FIFO, aging
#   policy_memory.*      fit arithmetic and eviction victims
#   policy_placement.*   least contended device
#   policy_priority.*    which classes a user may claim
#   policy_penalty.*     revoke offences: penalty and disconnect
add_library(acb_arbiter STATIC
  ${CMAKE_CURRENT_LIST_DIR}/arbiter.cpp
  ${CMAKE_CURRENT_LIST_DIR}/arbiter_admin.cpp
  ${CMAKE_CURRENT_LIST_DIR}/arbiter_inspect.cpp
  ${CMAKE_CURRENT_LIST_DIR}/arbiter_core.cpp
  ${CMAKE_CURRENT_LIST_DIR}/arbiter_gang.cpp
  ${CMAKE_CURRENT_LIST_DIR}/policy_queue.cpp
  ${CMAKE_CURRENT_LIST_DIR}/policy_memory.cpp
  ${CMAKE_CURRENT_LIST_DIR}/policy_placement.cpp
  ${CMAKE_CURRENT_LIST_DIR}/policy_priority.cpp
  ${CMAKE_CURRENT_LIST_DIR}/policy_penalty.cpp)
target_include_directories(acb_arbiter PUBLIC ${PROJECT_SOURCE_DIR})
acb_target_warnings(acb_arbiter)
