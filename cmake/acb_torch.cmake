# acb_find_torch(): the installed torch's headers and libraries as the
# imported target acb::torch, and its version in ACB_TORCH_VERSION.
#
# Why not find_package(Torch): the TorchConfig of a CUDA build of torch
# requires the CUDA toolkit's libraries (cudart, nvrtc, ...) and probes the
# GPUs of the build machine at configure time, while acb._C uses only torch's
# device-neutral C++ API (dispatcher, c10 allocator, pybind11). So acb takes
# the headers and the CPU-side libraries straight from the torch that Python
# imports, which builds the same on a machine without a GPU against a CPU or
# a CUDA build of any torch from 2.9 on.
function(acb_find_torch)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c
      "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
    OUTPUT_VARIABLE out OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "acb: cannot import torch with ${Python3_EXECUTABLE}:\n${err}")
  endif()
  string(REPLACE "\n" ";" fields "${out}")
  list(GET fields 0 torch_dir)
  list(GET fields 1 torch_version)
  list(GET fields 2 torch_abi)
  set(libs "")
  foreach(name c10 torch_cpu torch torch_python)
    find_library(ACB_TORCH_LIB_${name} ${name} PATHS "${torch_dir}/lib" NO_DEFAULT_PATH)
    if(NOT ACB_TORCH_LIB_${name})
      message(FATAL_ERROR "acb: lib${name}.so not found in ${torch_dir}/lib")
    endif()
    list(APPEND libs ${ACB_TORCH_LIB_${name}})
  endforeach()
  if(NOT TARGET acb::torch)
    add_library(acb::torch INTERFACE IMPORTED GLOBAL)
    # SYSTEM: torch's and its bundled pybind11's headers are not ours to warn about.
    target_include_directories(acb::torch SYSTEM INTERFACE
      "${torch_dir}/include" "${torch_dir}/include/torch/csrc/api/include")
    target_link_libraries(acb::torch INTERFACE ${libs})
    target_compile_definitions(acb::torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${torch_abi})
  endif()
  set(ACB_TORCH_VERSION "${torch_version}" PARENT_SCOPE)
  set(ACB_TORCH_DIR "${torch_dir}" PARENT_SCOPE)
  if(NOT DEFINED ACB_TORCH_CXX11_ABI)
    set(ACB_TORCH_CXX11_ABI "${torch_abi}" PARENT_SCOPE)
  endif()
  message(STATUS "acb: torch ${torch_version} at ${torch_dir} (C++11 ABI ${torch_abi})")
endfunction()
