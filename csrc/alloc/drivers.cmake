# The driver contract's implementations (included by CMakeLists.txt).
#   driver.cpp            parse_emulated_device, ACB_EMULATED_DEVICE
#   emulated_*.cpp        the emulated device (host memory, shared capacity ledger)
#   cuda_*.cpp            the CUDA driver API, libcuda.so.1 opened with dlopen:
#                         the CUDA headers are needed to build, never a GPU or libcuda.
find_path(ACB_CUDA_INCLUDE_DIR cuda.h
  HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{CUDA_HOME}/include $ENV{CUDA_PATH}/include /usr/local/cuda/include
  DOC "Directory holding the CUDA driver API header cuda.h")
if(NOT ACB_CUDA_INCLUDE_DIR)
  message(FATAL_ERROR "cuda.h not found: acb needs the CUDA headers to build (not a GPU). "
                      "Install the CUDA toolkit headers or pass -DACB_CUDA_INCLUDE_DIR=<dir with cuda.h>.")
endif()

# acb_cuda_api: the CUDA driver API table (cuda_api.h), one library for the
# CUDA driver here and the broker's device probe (broker_server/device_probe.h).
add_library(acb_cuda_api STATIC ${CMAKE_CURRENT_LIST_DIR}/cuda_api.cpp)
target_include_directories(acb_cuda_api PUBLIC ${PROJECT_SOURCE_DIR}/csrc)
target_include_directories(acb_cuda_api SYSTEM PRIVATE ${ACB_CUDA_INCLUDE_DIR})
target_link_libraries(acb_cuda_api PUBLIC ${CMAKE_DL_LIBS})
acb_target_warnings(acb_cuda_api)
target_link_libraries(acb_alloc PRIVATE acb_cuda_api)

set(ACB_CUDA_SOURCES ${CMAKE_CURRENT_LIST_DIR}/cuda_driver.cpp)
target_sources(acb_alloc PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/driver.cpp
  ${CMAKE_CURRENT_LIST_DIR}/emulated_ledger.cpp
  ${CMAKE_CURRENT_LIST_DIR}/emulated_memory.cpp
  ${CMAKE_CURRENT_LIST_DIR}/emulated_streams.cpp
  ${CMAKE_CURRENT_LIST_DIR}/emulated_driver.cpp
  ${ACB_CUDA_SOURCES})
# cuda.h only for these files, as a system header (its own warnings are not ours).
set_source_files_properties(${ACB_CUDA_SOURCES} PROPERTIES COMPILE_OPTIONS "-isystem;${ACB_CUDA_INCLUDE_DIR}")
