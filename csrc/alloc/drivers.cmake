# The driver contract's implementations (included by CMakeLists.txt).
#   driver.cpp            parse_emulated_device, ACB_EMULATED_DEVICE
#   emulated_*.cpp        the emulated device (host memory, shared capacity ledger)
#   cuda_*.cpp            the CUDA driver API, libcuda.so.1 opened with dlopen
target_sources(acb_alloc PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/driver.cpp
  ${CMAKE_CURRENT_LIST_DIR}/emulated_ledger.cpp
  ${CMAKE_CURRENT_LIST_DIR}/emulated_memory.cpp
  ${CMAKE_CURRENT_LIST_DIR}/emulated_streams.cpp
  ${CMAKE_CURRENT_LIST_DIR}/emulated_driver.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cuda_driver_stub.cpp)
