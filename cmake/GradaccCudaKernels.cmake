# gradacc's own CUDA kernels (src/device/*.cu): compiled by nvcc into the object library
# gradacc_cuda_kernels, which the CUDA variants link (gradacc_link_backend in CMakeLists.txt).
# Sets GRADACC_HAVE_CUDA_KERNELS and GRADACC_CUDART (the CUDA runtime they call: the wheel's own
# libcudart, the one LibTorch loads, so that one runtime serves both).
#
# Architectures: CMAKE_CUDA_ARCHITECTURES, 90 (H100, H200) unless given; add 80 for an A100.
set(GRADACC_HAVE_CUDA_KERNELS OFF)
if(GRADACC_HAVE_CUDA_LIBS AND (GRADACC_CUDA OR GRADACC_CUDA_LINK_CHECK) AND NOT GRADACC_CUDA_KERNELS STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  get_filename_component(_gradacc_site "${TORCH_ROOT}" DIRECTORY)
  find_library(GRADACC_CUDART NAMES libcudart.so.13 libcudart.so.12 cudart NO_DEFAULT_PATH
               PATHS "${_gradacc_site}/nvidia/cu13/lib" "${_gradacc_site}/nvidia/cuda_runtime/lib"
                     "${_gradacc_site}/nvidia/cu12/lib")
  if(NOT GRADACC_CUDART)
    find_library(GRADACC_CUDART NAMES cudart PATHS "$ENV{CUDA_HOME}/lib64" /usr/local/cuda/lib64)
  endif()
  if(CMAKE_CUDA_COMPILER AND GRADACC_CUDART)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no CUDA20 flags for nvcc; the kernels need none
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    add_library(gradacc_cuda_kernels OBJECT src/device/fused_norm_kernels.cu)
    target_include_directories(gradacc_cuda_kernels PRIVATE "${CMAKE_SOURCE_DIR}/src")
    set_target_properties(gradacc_cuda_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_compile_options(gradacc_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
    if(GRADACC_WERROR)
      target_compile_options(gradacc_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Werror>)
    endif()
    set(GRADACC_HAVE_CUDA_KERNELS ON)
  elseif(GRADACC_CUDA_KERNELS STREQUAL "ON")
    message(FATAL_ERROR "GRADACC_CUDA_KERNELS=ON, but no CUDA compiler (nvcc) or no CUDA runtime library was found")
  endif()
endif()
message(STATUS "gradacc: CUDA kernels: ${GRADACC_HAVE_CUDA_KERNELS} (${CMAKE_CUDA_COMPILER} ${CMAKE_CUDA_ARCHITECTURES})")
