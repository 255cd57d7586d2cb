// The kernel interface the model is written against, once. The CPU backend is the reference
// implementation (and the oracle the CUDA backend is tested against).
//
// Conventions shared by every backend:
//  * Buffers are opaque handles to backend memory. The model only computes element counts; the
//    backend chooses each buffer's element type from its Kind (CPU: fp32 everywhere; CUDA: bf16
//    for parameters' compute copy, activations and gradients, fp32 for master weights and the
//    optimizer moments). Token/target buffers are int32 everywhere. Host code never dereferences
//    a Buf; it moves data with upload()/download(), which convert to/from fp32.
//  * Shapes are row-major. N = B*T rows. Linear weights are [out, in] (PyTorch Linear layout), so
//    y = x W^T + b.
//  * "+=" in a comment means the op accumulates into that output (gradient accumulation across
//    micro-batches, and residual-stream gradients); every other output is overwritten.
//  * Ops are asynchronous on devices; only the functions returning host values synchronize.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tsumugi::backend {

enum class Kind {
  Param,       // compute copy of the weights (CPU: the master itself)
  Master,      // fp32 master weights
  Grad,        // parameter gradients
  OptState,    // AdamW first/second moments, fp32
  Activation,  // forward activations and their gradients
  Float32,     // always fp32 (losses, norms' statistics, attention log-sum-exp)
  Int32,       // tokens, targets
};

struct Buf {
  void* ptr = nullptr;
  std::size_t count = 0;  // elements
  Kind kind = Kind::Float32;
  explicit operator bool() const { return ptr != nullptr; }
};

struct AttentionShape {
  int B, T;      // batch, sequence
  int n_head;    // query heads
  int n_kv_head; // key/value heads (grouped-query attention when < n_head); n_head % n_kv_head == 0
  int head_dim;
};

struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay;
  int step;            // 1-based, for bias correction
  float grad_scale;    // multiplies the gradient first (clipping and 1/accumulation)
};

// One tensor of a flat parameter buffer for Backend::adamw_update_segments: elements
// [offset, offset + count) of every buffer passed, updated with this weight decay.
struct AdamWSegment {
  std::size_t offset = 0, count = 0;
  float weight_decay = 0.0f;
};

// Sums and gathers over the ranks of a data-parallel job directly on one backend's buffers (NCCL
// on CUDA), so gradients and weights need not pass through host memory. A backend that has no
// such transport returns none from make_device_comm and the trainer goes through the host
// (train::Collective). Calls are collective: every rank makes the same ones in the same order.
// Buffers hold elements of their Kind's storage type (bf16 gradients are summed in bf16).
class DeviceComm {
 public:
  virtual ~DeviceComm() = default;
  virtual std::string describe() const = 0;
  // b[0, n) = its sum over ranks.
  virtual void allreduce_sum(const Buf& b, std::size_t n) = 0;
  // b holds one segment of counts[r] elements per rank r, in rank order; afterwards this rank's
  // segment holds the sum over ranks (the others are unspecified).
  virtual void reduce_scatter_sum(const Buf& b, const std::vector<std::size_t>& counts) = 0;
  // Every rank's own segment of b (laid out as above) copied to every rank.
  virtual void allgather(const Buf& b, const std::vector<std::size_t>& counts) = 0;
};

// What a device communicator needs from the job that launched it: its place, a way to share bytes
// from rank 0 (NCCL's unique id), and the job-wide abort (which must not return).
struct CommBootstrap {
  int rank = 0, size = 1;
  std::function<void(void* bytes, std::size_t n)> broadcast_from_rank0;
  std::function<void(const std::string& message)> abort;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Bytes per element of a buffer of this kind.
  virtual std::size_t element_size(Kind kind) const = 0;

  // ---- memory
  virtual Buf alloc(std::size_t count, Kind kind) = 0;  // zero-initialised
  virtual void free(Buf& b) = 0;
  virtual Buf view(const Buf& b, std::size_t offset, std::size_t count) const {
    Buf s = b;
    s.count = count;
    s.ptr = static_cast<char*>(b.ptr) + offset * element_size(b.kind);
    return s;
  }
  virtual void upload(Buf dst, const float* src, std::size_t count) = 0;  // converts from fp32
  virtual void upload_ints(Buf dst, const int32_t* src, std::size_t count) = 0;
  virtual void download(float* dst, const Buf& src, std::size_t count) = 0;  // converts to fp32
  virtual void zero(Buf b, std::size_t count) = 0;
  // dst = src (element types may differ: e.g. Master -> Param after loading a checkpoint)
  virtual void copy(Buf dst, const Buf& src, std::size_t count) = 0;
  virtual void synchronize() {}
  // The device's dense bf16 peak in FLOP/s for MFU, when known from its specification (0 = unknown:
  // the trainer then measures the matmul peak itself, as it does on CPUs).
  virtual double nominal_peak_flops() const { return 0.0; }
  // The most memory this backend has held at once, in bytes, when it keeps its own memory (a
  // GPU's); 0 = it lives in the process's heap, whose peak RSS tells more.
  virtual uint64_t peak_memory_bytes() const { return 0; }
  // A communicator over this backend's buffers for the job `boot` describes, or nullptr (with
  // `why`) when the backend has none; the caller then reduces through host memory.
  virtual std::unique_ptr<DeviceComm> make_device_comm(const CommBootstrap& boot, std::string* why) {
    (void)boot;
    if (why) *why = name() + " has no device communicator";
    return nullptr;
  }

  // ---- embeddings
  // out[N,C] = wte[tokens[n]] (+ wpe[n % T] when wpe is given)
  virtual void embedding_forward(Buf out, const Buf& tokens, const Buf& wte, const Buf& wpe,
                                 int B, int T, int C) = 0;
  // dwte[tokens[n]] += dout[n]; dwpe[t] += sum_b dout[b,t]   (dwpe optional)
  virtual void embedding_backward(Buf dwte, Buf dwpe, const Buf& dout, const Buf& tokens, int B,
                                  int T, int C) = 0;

  // ---- matmul: out[N,OC] = inp[N,IC] W[OC,IC]^T (+ bias[OC])
  virtual void matmul_forward(Buf out, const Buf& inp, const Buf& weight, const Buf& bias, int N,
                              int IC, int OC) = 0;
  // dinp = dout W (or += when accumulate_dinp); dweight += dout^T inp; dbias += sum_n dout
  // (dinp, dweight, dbias may be empty: an empty dweight is a frozen weight, as under LoRA)
  virtual void matmul_backward(Buf dinp, Buf dweight, Buf dbias, const Buf& dout, const Buf& inp,
                               const Buf& weight, int N, int IC, int OC,
                               bool accumulate_dinp) = 0;

  // ---- norms. mean/rstd are Float32 [N].
  virtual void layernorm_forward(Buf out, Buf mean, Buf rstd, const Buf& inp, const Buf& weight,
                                 const Buf& bias, int N, int C, float eps) = 0;
  // The residual add and the LayerNorm that follows it (GPT-2's second norm in a block) as one
  // op: sum = a + b (written: the residual stream), then layernorm_forward(out, mean, rstd, sum,
  // weight, bias). The default runs add and layernorm_forward; the CUDA backend normalises the sum
  // while it is still in registers, with the same results.
  virtual void add_layernorm_forward(Buf sum, Buf out, Buf mean, Buf rstd, const Buf& a, const Buf& b,
                                     const Buf& weight, const Buf& bias, int N, int C, float eps);
  // dinp += ..., dweight += ..., dbias += ...  (dweight, dbias may be empty: frozen)
  virtual void layernorm_backward(Buf dinp, Buf dweight, Buf dbias, const Buf& dout,
                                  const Buf& inp, const Buf& weight, const Buf& mean,
                                  const Buf& rstd, int N, int C) = 0;
  virtual void rmsnorm_forward(Buf out, Buf rstd, const Buf& inp, const Buf& weight, int N, int C,
                               float eps) = 0;
  // dinp += ..., dweight += ...  (dweight may be empty: frozen)
  virtual void rmsnorm_backward(Buf dinp, Buf dweight, const Buf& dout, const Buf& inp,
                                const Buf& weight, const Buf& rstd, int N, int C) = 0;

  // ---- elementwise
  virtual void add(Buf out, const Buf& a, const Buf& b, std::size_t n) = 0;  // out = a + b
  virtual void accumulate(Buf dst, const Buf& src, std::size_t n) = 0;    // dst += src
  // GELU, tanh approximation (GPT-2's gelu_new)
  virtual void gelu_forward(Buf out, const Buf& inp, std::size_t n) = 0;
  virtual void gelu_backward(Buf dinp, const Buf& inp, const Buf& dout, std::size_t n) = 0;
  // A linear layer followed by GELU (GPT-2's MLP up projection): pre[N,OC] = inp W^T + b, kept
  // for the backward pass, and out = gelu(pre). The default runs matmul_forward and gelu_forward;
  // the CUDA backend can do it in one cuBLASLt matmul with a GELU epilogue.
  virtual void matmul_gelu_forward(Buf out, Buf pre, const Buf& inp, const Buf& weight, const Buf& bias, int N,
                                   int IC, int OC);
  // The backward of a linear layer whose input was gelu(pre) (the MLP down projection) carried on
  // through the GELU: dpre[N,IC] = (dout W) * gelu'(pre) (overwritten), dweight += act^T dout,
  // dbias += column sums of dout. dact [N,IC] is scratch for backends that do not fuse (its
  // contents afterwards are unspecified).
  virtual void matmul_gelu_backward(Buf dpre, Buf dweight, Buf dbias, const Buf& dout, const Buf& act,
                                    const Buf& weight, const Buf& pre, Buf dact, int N, int IC, int OC);
  // inp rows are [gate(F) | up(F)]; out[N,F] = silu(gate) * up
  virtual void swiglu_forward(Buf out, const Buf& inp, int N, int F) = 0;
  virtual void swiglu_backward(Buf dinp, const Buf& inp, const Buf& dout, int N, int F) = 0;

  // ---- LoRA and hidden-dropout helpers. Both have a host implementation here (download,
  // compute, upload) so a new backend is correct before it is fast; the CPU and CUDA backends
  // override them with their own loops / kernels.
  //
  // out[n,c] = inp[n,c] * scale / (1 - p) when kept, else 0; element (n, c) is kept when
  // dropout_uniform(seed, first_row + n, C, c) >= p. p = 0 is a plain scale. The mask is a pure
  // function of (seed, row, column), so the backward pass applies the same op to the gradient
  // without storing a mask. out may alias inp.
  virtual void dropout_scale(Buf out, const Buf& inp, int N, int C, float p, uint64_t seed,
                             uint64_t first_row, float scale);
  // dst[n*dst_stride + c] = (or += when accumulate) src[n*src_stride + c], n < N, c < C: one
  // column block of a fused projection's output (LLaMA's q/k/v, gate/up).
  virtual void copy_strided(Buf dst, int dst_stride, const Buf& src, int src_stride, int N, int C,
                            bool accumulate);

  // ---- rotary position embedding (HF rotate_half convention: dims i and i + head_dim/2 pair up,
  // inv_freq_i = theta^(-2i/head_dim)). qkv rows are [q(H*hd) | k(KV*hd) | v(KV*hd)]; position
  // of row n is n % T. out gets q and k rotated, v copied. Backward applies the inverse rotation.
  virtual void rope_forward(Buf out, const Buf& qkv, const AttentionShape& s, float theta) = 0;
  virtual void rope_backward(Buf dqkv, const Buf& dout, const AttentionShape& s,
                             float theta) = 0;

  // ---- causal self-attention, scale 1/sqrt(head_dim). qkv as above; out[N, H*hd] with head h at
  // columns h*hd. lse is Float32 [B, H, T]: the log-sum-exp of each query's scaled scores, kept
  // for the backward pass, which recomputes probabilities instead of storing T x T.
  virtual void attention_forward(Buf out, Buf lse, const Buf& qkv, const AttentionShape& s) = 0;
  // dqkv is overwritten.
  virtual void attention_backward(Buf dqkv, const Buf& dout, const Buf& qkv, const Buf& out,
                                  const Buf& lse, const AttentionShape& s) = 0;

  // ---- fused softmax cross-entropy. logits [N,V] (Activation); targets Int32 [N], a negative
  // target is ignored (no loss, zero gradient). losses Float32 [N] get -log p[target] (0 when
  // ignored). If dloss != 0, logits are overwritten with dloss * (softmax - onehot).
  virtual void cross_entropy_forward_backward(Buf losses, Buf logits, const Buf& targets, int N,
                                              int V, float dloss) = 0;

  // ---- optimizer. master/m/v fp32; param is the compute copy refreshed from master (may be the
  // same buffer as master). Decoupled weight decay: w -= lr * (mhat/(sqrt(vhat)+eps) + wd * w).
  virtual void adamw_update(Buf master, Buf param, const Buf& grad, Buf m, Buf v, std::size_t n,
                            const AdamWParams& p) = 0;
  // adamw_update on several tensors of the same flat buffers in one call, each segment with its
  // own weight decay (p.weight_decay is not used). Elements outside every segment are left alone;
  // segments must not overlap. Results equal one adamw_update per segment, which is what this
  // default does; the CUDA backend runs them all in one kernel (GPT-2 124M has ~150 tensors, and
  // one launch each left the GPU idle between the small ones).
  virtual void adamw_update_segments(Buf master, Buf param, const Buf& grad, Buf m, Buf v,
                                     const std::vector<AdamWSegment>& segments, const AdamWParams& p);
  // sum of squares of a gradient buffer (fp64 accumulation), returned to the host
  virtual double sum_squares(const Buf& b, std::size_t n) = 0;
  // sum of a Float32 buffer, returned to the host
  virtual double sum(const Buf& b, std::size_t n) = 0;
};

// Callable from CUDA device code too, so the GPU kernels use this very definition (nvcc sees
// __CUDACC__; the CPU compilers and the CUDA emulator see a plain inline function).
#if defined(__CUDACC__)
#define TSUMUGI_HOST_DEVICE __host__ __device__
#else
#define TSUMUGI_HOST_DEVICE
#endif

// The uniform [0, 1) number deciding whether dropout keeps element (row, col) of a [rows, C]
// tensor: a counter-based hash, so every backend draws the same mask for a seed.
TSUMUGI_HOST_DEVICE inline float dropout_uniform(uint64_t seed, uint64_t row, int C, int col) {
  uint64_t x = seed + (row * static_cast<uint64_t>(C) + static_cast<uint64_t>(col)) * 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<float>(x >> 40) * (1.0f / 16777216.0f);
}

// The CPU backend (fp32; matmuls through oneDNN). `bf16_matmul` rounds matmul inputs to bf16 and
// accumulates in fp32 (AVX512-BF16 hardware); other kernels stay fp32.
std::unique_ptr<Backend> make_cpu_backend(bool bf16_matmul = false);

// c[M,N] = a[M,K] * w[N,K]^T, both inputs bf16 and row-major, c fp32: oneDNN's bf16 matmul on the
// CPU, for callers whose weights are stored in bf16 (the inference engine's prompts).
void cpu_matmul_bf16(const uint16_t* a, int M, int K, const uint16_t* w, int N, float* c);

// The CUDA backend if this binary was built with it and a GPU is present; nullptr otherwise
// (with `why` saying which).
std::unique_ptr<Backend> make_cuda_backend(std::string* why);

// "cpu", "cpu-bf16", "cuda" or "auto" (CUDA when available, else CPU with a notice).
std::unique_ptr<Backend> make_backend(const std::string& name);

}  // namespace tsumugi::backend
