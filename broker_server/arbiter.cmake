# acb_arbiter: the broker's policy, no I/O (see arbiter.h).
add_library(acb_arbiter STATIC ${CMAKE_CURRENT_LIST_DIR}/arbiter.cpp)
target_include_directories(acb_arbiter PUBLIC ${PROJECT_SOURCE_DIR})
acb_target_warnings(acb_arbiter)
