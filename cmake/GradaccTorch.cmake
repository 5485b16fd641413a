# LibTorch from the PyPI `torch` wheel, as imported targets, for gradacc's own build and for the
# installed package (gradaccConfig.cmake), so that a project using gradacc links LibTorch exactly
# the way gradacc does.
#
#   gradacc::torch       libtorch_cpu + libc10, their headers, the wheel's C++ ABI, {fmt} header-only
#                        (the wheel's own fmt headers), an rpath to the wheel
#   gradacc::torch_cuda  gradacc::torch + libtorch_cuda + libc10_cuda and the CUDA runtime headers
#
# find_package(Torch) is not used: its target list puts libtorch.so first, a shim that carries its
# own partial copy of std::filesystem, whose remove_all() jumps to a weak symbol nothing defines (a
# crash in every program that deletes a directory). So libstdc++ is named first, making the C++
# runtime the first provider of every std:: symbol, and libtorch.so is never linked (docs/gpu.md).
# --no-as-needed keeps every named library, even one no symbol is taken from (libtorch_cuda
# registers the CUDA kernels when it loads).

# Sets TORCH_ROOT (the wheel's torch/ directory), TORCH_CXX11_ABI and TORCH_VERSION (without the
# local "+cu130" part) from a python whose environment holds the torch wheel. The wheel need not
# import: `make run` installs it without its Python and CUDA dependencies (scripts/setup.sh --run),
# and then the C++ ABI is read from libc10.so's symbols (std::__cxx11 names are the new ABI's).
function(gradacc_query_torch python)
  set(query [=[
import importlib.metadata, importlib.util, os
spec = importlib.util.find_spec("torch")
root = spec.submodule_search_locations[0]
try:
    import torch
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
except Exception:
    with open(os.path.join(root, "lib", "libc10.so"), "rb") as f:
        abi = int(b"__cxx11" in f.read())
print(root, abi, importlib.metadata.version("torch").split("+")[0], sep=";", end="")
]=])
  execute_process(COMMAND "${python}" -c "${query}" OUTPUT_VARIABLE info RESULT_VARIABLE rc ERROR_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${python} has no torch wheel (scripts/setup.sh installs the pinned one)")
  endif()
  list(GET info 0 root)
  list(GET info 1 abi)
  list(GET info 2 version)
  set(TORCH_ROOT "${root}" PARENT_SCOPE)
  set(TORCH_CXX11_ABI "${abi}" PARENT_SCOPE)
  set(TORCH_VERSION "${version}" PARENT_SCOPE)
endfunction()

# The directory holding the CUDA runtime headers for the wheel at `torch_root`, or "" (sets
# GRADACC_CUDA_INCLUDE_DIR). Some wheels ship cuda_runtime_api.h without the crt/ headers it
# includes, so the search is for crt/host_config.h.
function(gradacc_find_cuda_headers torch_root)
  get_filename_component(site "${torch_root}" DIRECTORY)
  find_path(GRADACC_CUDA_INCLUDE_DIR crt/host_config.h NO_DEFAULT_PATH
    PATHS "${site}/nvidia/cu13/include" "${site}/nvidia/cuda_runtime/include" "${site}/nvidia/cu12/include"
          "$ENV{CUDA_HOME}/include" /usr/local/cuda/include)
endfunction()

function(gradacc_define_torch_targets torch_root abi cuda_include_dir)
  set(lib "${torch_root}/lib")
  if(NOT EXISTS "${lib}/libtorch_cpu.so")
    message(FATAL_ERROR "no LibTorch at ${torch_root} (libtorch_cpu.so missing): pass -DTORCH_PYTHON=<a python that imports torch>")
  endif()
  execute_process(COMMAND "${CMAKE_CXX_COMPILER}" -print-file-name=libstdc++.so OUTPUT_VARIABLE libstdcxx
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT (IS_ABSOLUTE "${libstdcxx}" AND EXISTS "${libstdcxx}"))
    set(libstdcxx stdc++)
  endif()
  if(NOT TARGET gradacc::torch)
    add_library(gradacc::torch INTERFACE IMPORTED GLOBAL)
    set_target_properties(gradacc::torch PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${torch_root}/include;${torch_root}/include/torch/csrc/api/include"
      INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=${abi};FMT_HEADER_ONLY=1"
      INTERFACE_LINK_OPTIONS "-Wl,--no-as-needed;-Wl,-rpath,${lib}"
      INTERFACE_LINK_LIBRARIES "${libstdcxx};${lib}/libtorch_cpu.so;${lib}/libc10.so")
  endif()
  if(cuda_include_dir AND EXISTS "${lib}/libtorch_cuda.so" AND NOT TARGET gradacc::torch_cuda)
    # NCCL's header (for c10d's ProcessGroupNCCL, whose code is in libtorch_cuda): the wheel's
    # nvidia-nccl package, or a system one. Without it the CUDA build has no NCCL.
    get_filename_component(site "${torch_root}" DIRECTORY)
    find_path(GRADACC_NCCL_INCLUDE_DIR nccl.h PATHS "${site}/nvidia/nccl/include" /usr/include /usr/local/cuda/include)
    set(includes "${cuda_include_dir}")
    set(definitions "")
    if(GRADACC_NCCL_INCLUDE_DIR)
      list(APPEND includes "${GRADACC_NCCL_INCLUDE_DIR}")
      set(definitions "GRADACC_HAVE_NCCL=1")
    endif()
    add_library(gradacc::torch_cuda INTERFACE IMPORTED GLOBAL)
    set_target_properties(gradacc::torch_cuda PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${includes}"
      INTERFACE_COMPILE_DEFINITIONS "${definitions}"
      INTERFACE_LINK_LIBRARIES "gradacc::torch;${lib}/libtorch_cuda.so;${lib}/libc10_cuda.so")
  endif()
endfunction()
