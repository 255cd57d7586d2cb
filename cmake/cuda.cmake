# The CUDA backend (src/backend/cuda), built when nvcc is found. Included from the top-level
# CMakeLists.txt after tsumugi_core is defined; sets TSUMUGI_HAVE_CUDA.
#   -DTSUMUGI_WITH_CUDA=OFF             never build it
#   -DCMAKE_CUDA_ARCHITECTURES=90       (or native) build for one GPU only: faster to compile
#   -DTSUMUGI_WITH_NCCL=OFF             no NCCL device communicator (multi-GPU runs then sum
#                                       gradients through host memory and MPI)
#   -DNCCL_ROOT=/path                   where nccl.h / libnccl are, when not in the CUDA toolkit
option(TSUMUGI_WITH_CUDA "Build the CUDA backend when a CUDA compiler is found" ON)
option(TSUMUGI_WITH_NCCL "Build the NCCL communicator when CUDA, NCCL and MPI are all found" ON)
set(TSUMUGI_HAVE_CUDA OFF)

if(TSUMUGI_WITH_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # A100 (80) and H100/H200 (90); each architecture adds compile time.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures to build for")
    endif()
    # One CUDA runtime per process: the shared one, which CUDA::cudart below also names.
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(TSUMUGI_HAVE_CUDA ON)
    message(STATUS "CUDA backend: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

    file(GLOB TSUMUGI_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cu)
    add_library(tsumugi_cuda STATIC ${TSUMUGI_CUDA_SOURCES})
    # The directory-wide options (-Wall..., -fsanitize=... under TSUMUGI_SANITIZE) are host
    # compiler flags nvcc rejects; the CUDA code gets its own.
    set_property(TARGET tsumugi_cuda PROPERTY COMPILE_OPTIONS "")
    target_compile_options(tsumugi_cuda PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wno-unused-parameter,-Wno-restrict --expt-relaxed-constexpr>)
    target_include_directories(tsumugi_cuda PRIVATE ${CMAKE_SOURCE_DIR}/src)
    set_target_properties(tsumugi_cuda PROPERTIES
      CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON CUDA_EXTENSIONS OFF
      CUDA_RUNTIME_LIBRARY Shared)
    target_link_libraries(tsumugi_cuda PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt)
    target_compile_definitions(tsumugi_core PUBLIC TSUMUGI_HAVE_CUDA=1)
    target_link_libraries(tsumugi_core PUBLIC tsumugi_cuda)
    # The CUDA backend derives from backend::Backend, whose default ops live in tsumugi_core: the two
    # static libraries need each other (CMake repeats them on link lines). Link-only, so the core's
    # compile flags stay out of nvcc's command lines.
    target_link_libraries(tsumugi_cuda PRIVATE $<LINK_ONLY:tsumugi_core>)

    # NCCL for multi-GPU data parallelism. Its bootstrap id travels over MPI (the trainer's host
    # communicator), so it is only useful with MPI.
    set(TSUMUGI_HAVE_NCCL OFF)
    if(TSUMUGI_WITH_NCCL AND TSUMUGI_HAVE_MPI)
      find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_INCLUDE_DIRS}
                PATH_SUFFIXES include)
      find_library(NCCL_LIBRARY nccl HINTS ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_DIR}
                   PATH_SUFFIXES lib lib64)
      if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
        set(TSUMUGI_HAVE_NCCL ON)
        target_compile_definitions(tsumugi_cuda PRIVATE TSUMUGI_HAVE_NCCL=1)
        target_include_directories(tsumugi_cuda PRIVATE ${NCCL_INCLUDE_DIR})
        target_link_libraries(tsumugi_cuda PUBLIC ${NCCL_LIBRARY})
        message(STATUS "CUDA backend: NCCL communicator (${NCCL_LIBRARY})")
      else()
        message(STATUS "CUDA backend: NCCL not found; multi-GPU runs will sum gradients through host memory")
      endif()
    endif()
  else()
    message(STATUS "CUDA backend: no CUDA compiler found, building without it")
  endif()
endif()

# GPU tests when CUDA is built; the CPU emulation of the CUDA kernels is built either way.
if(TSUMUGI_BUILD_TESTS)
  enable_testing()
  add_subdirectory(${CMAKE_SOURCE_DIR}/tests/cuda ${CMAKE_BINARY_DIR}/tests/cuda)
endif()
