# CUDA backend: built when nvcc is found (lands with src/backend/cuda).
set(TSUMUGI_HAVE_CUDA OFF)
