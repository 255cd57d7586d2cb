// A stand-in for the part of NCCL that nccl_comm.cu uses, for the CUDA emulator
// (tsumugi_cuda_emu_tests, TSUMUGI_CUDA_EMULATION): the collectives run over MPI on host memory,
// which is what emulated device memory is. It lets a CI machine without GPUs run the trainer's
// NCCL code path (bootstrap, which collective is called on which buffer, in-place offsets, error
// handling) under mpirun. It tests tsumugi's use of NCCL, not NCCL: transport, rings and
// NCCL's reduction order are not modelled. bf16 is summed in fp32 and rounded once, the host
// path's arithmetic (NCCL's own bf16 adds along its ring can round differently in rare cases).
//
// TSU_EMU_NCCL_FAIL=RANK:N makes the N-th (0-based) collective call on rank RANK return
// ncclSystemError, so tests can check that an NCCL error ends every rank.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

enum ncclResult_t {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7
};
enum ncclDataType_t { ncclFloat32 = 7, ncclBfloat16 = 9 };
enum ncclRedOp_t { ncclSum = 0 };
constexpr int NCCL_UNIQUE_ID_BYTES = 128;
struct ncclUniqueId {
  char internal[NCCL_UNIQUE_ID_BYTES];
};
struct ncclComm {
  MPI_Comm mpi = MPI_COMM_NULL;
  int rank = 0, size = 1;
  bool aborted = false;
};
using ncclComm_t = ncclComm*;

namespace emu_nccl {

inline int& call_counter() {
  static int n = 0;
  return n;
}

// Whether this call is the one TSU_EMU_NCCL_FAIL asks to fail.
inline bool injected_failure(const ncclComm* c) {
  const char* f = std::getenv("TSU_EMU_NCCL_FAIL");
  const int call = call_counter()++;
  if (!f || !*f) return false;
  const std::string s(f);
  const auto colon = s.find(':');
  if (colon == std::string::npos) return false;
  return std::atoi(s.substr(0, colon).c_str()) == c->rank && std::atoi(s.c_str() + colon + 1) == call;
}

inline bool fits_int(std::size_t n) { return n <= static_cast<std::size_t>(std::numeric_limits<int>::max()); }

inline std::size_t type_size(ncclDataType_t t) { return t == ncclBfloat16 ? 2 : 4; }

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// fp32 copies of `count` elements, and back (bf16 is rounded once, after the sum).
inline std::vector<float> widen(const void* p, std::size_t count, ncclDataType_t t) {
  std::vector<float> v(count);
  if (t == ncclFloat32) {
    std::memcpy(v.data(), p, count * 4);
  } else {
    const uint16_t* h = static_cast<const uint16_t*>(p);
    for (std::size_t i = 0; i < count; ++i) v[i] = bf16_to_float(h[i]);
  }
  return v;
}
inline void narrow(void* p, const float* v, std::size_t count, ncclDataType_t t) {
  if (t == ncclFloat32) {
    std::memcpy(p, v, count * 4);
  } else {
    uint16_t* h = static_cast<uint16_t*>(p);
    for (std::size_t i = 0; i < count; ++i) h[i] = float_to_bf16(v[i]);
  }
}

inline ncclResult_t check(ncclComm* c, std::size_t count, ncclRedOp_t op = ncclSum) {
  if (!c || c->aborted) return ncclInvalidUsage;
  if (!fits_int(count) || op != ncclSum) return ncclInvalidArgument;
  if (injected_failure(c)) return ncclSystemError;
  return ncclSuccess;
}

inline ncclResult_t mpi(int rc) { return rc == MPI_SUCCESS ? ncclSuccess : ncclSystemError; }

}  // namespace emu_nccl

inline const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "unhandled system error (emulated)";
    case ncclInvalidArgument: return "invalid argument (emulated)";
    case ncclInvalidUsage: return "invalid usage (emulated)";
    default: return "NCCL error (emulated)";
  }
}

// Differs between processes (time, pid), so a rank that skips the broadcast of rank 0's id is
// caught by ncclCommInitRank below.
inline ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id, 0, sizeof(*id));
  const uint64_t a = static_cast<uint64_t>(std::time(nullptr)), b = static_cast<uint64_t>(getpid());
  const uint64_t c = reinterpret_cast<uintptr_t>(id);
  std::memcpy(id->internal, &a, 8);
  std::memcpy(id->internal + 8, &b, 8);
  std::memcpy(id->internal + 16, &c, 8);
  return ncclSuccess;
}

// Every rank must pass the same id and agree with MPI about its rank and the rank count.
inline ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  int world = 0, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (nranks != world || rank != me) return ncclInvalidArgument;
  std::vector<char> root(id.internal, id.internal + NCCL_UNIQUE_ID_BYTES);
  if (MPI_Bcast(root.data(), NCCL_UNIQUE_ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return ncclSystemError;
  int same = std::memcmp(root.data(), id.internal, NCCL_UNIQUE_ID_BYTES) == 0, all = 0;
  MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  if (!all) return ncclInvalidUsage;  // real NCCL would hang or connect to the wrong job
  auto* c = new ncclComm;
  MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
  c->rank = rank;
  c->size = nranks;
  *comm = c;
  return ncclSuccess;
}
inline ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  if (comm->mpi != MPI_COMM_NULL) MPI_Comm_free(&comm->mpi);
  delete comm;
  return ncclSuccess;
}
// A local operation in NCCL (peers are not told): nothing is freed that MPI still needs.
inline ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm) comm->aborted = true;
  return ncclSuccess;
}
inline ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* err) {
  *err = ncclSuccess;
  return comm ? ncclSuccess : ncclInvalidArgument;
}
// Calls run when issued: every rank issues the same sequence, so the blocking MPI collectives
// pair up as NCCL's grouped ones do.
inline ncclResult_t ncclGroupStart() { return ncclSuccess; }
inline ncclResult_t ncclGroupEnd() { return ncclSuccess; }

inline ncclResult_t ncclAllReduce(const void* send, void* recv, std::size_t count, ncclDataType_t t,
                                  ncclRedOp_t op, ncclComm_t comm, cudaStream_t) {
  if (ncclResult_t r = emu_nccl::check(comm, count, op)) return r;
  std::vector<float> v = emu_nccl::widen(send, count, t);
  if (auto r = emu_nccl::mpi(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                                           comm->mpi)))
    return r;
  emu_nccl::narrow(recv, v.data(), count, t);
  return ncclSuccess;
}

// NCCL's in-place form: recv == send + rank * recvcount.
inline ncclResult_t ncclReduceScatter(const void* send, void* recv, std::size_t recvcount, ncclDataType_t t,
                                      ncclRedOp_t op, ncclComm_t comm, cudaStream_t) {
  if (ncclResult_t r = emu_nccl::check(comm, recvcount * comm->size, op)) return r;
  std::vector<float> v = emu_nccl::widen(send, recvcount * comm->size, t), mine(recvcount);
  if (auto r = emu_nccl::mpi(MPI_Reduce_scatter_block(v.data(), mine.data(), static_cast<int>(recvcount), MPI_FLOAT,
                                                      MPI_SUM, comm->mpi)))
    return r;
  emu_nccl::narrow(recv, mine.data(), recvcount, t);
  return ncclSuccess;
}

// In place when send == recv + rank * sendcount.
inline ncclResult_t ncclAllGather(const void* send, void* recv, std::size_t sendcount, ncclDataType_t t,
                                  ncclComm_t comm, cudaStream_t) {
  if (ncclResult_t r = emu_nccl::check(comm, sendcount * comm->size)) return r;
  const std::size_t bytes = sendcount * emu_nccl::type_size(t);
  std::vector<char> all(bytes * comm->size);
  if (auto r = emu_nccl::mpi(MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, all.data(), static_cast<int>(bytes),
                                           MPI_BYTE, comm->mpi)))
    return r;
  std::memcpy(recv, all.data(), all.size());
  return ncclSuccess;
}

inline ncclResult_t ncclReduce(const void* send, void* recv, std::size_t count, ncclDataType_t t, ncclRedOp_t op,
                               int root, ncclComm_t comm, cudaStream_t) {
  if (ncclResult_t r = emu_nccl::check(comm, count, op)) return r;
  std::vector<float> v = emu_nccl::widen(send, count, t), sum(comm->rank == root ? count : 0);
  if (auto r = emu_nccl::mpi(
          MPI_Reduce(v.data(), sum.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, root, comm->mpi)))
    return r;
  if (comm->rank == root) emu_nccl::narrow(recv, sum.data(), count, t);
  return ncclSuccess;
}

inline ncclResult_t ncclBroadcast(const void* send, void* recv, std::size_t count, ncclDataType_t t, int root,
                                  ncclComm_t comm, cudaStream_t) {
  if (ncclResult_t r = emu_nccl::check(comm, count * emu_nccl::type_size(t))) return r;
  const std::size_t bytes = count * emu_nccl::type_size(t);
  if (comm->rank == root && send != recv) std::memmove(recv, send, bytes);
  return emu_nccl::mpi(MPI_Bcast(recv, static_cast<int>(bytes), MPI_BYTE, root, comm->mpi));
}
