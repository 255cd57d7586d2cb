// Memory read bandwidth, the ceiling of single-token decoding: every weight is read once per token,
// so tokens/s can be at most bandwidth / weight bytes. Measured over a buffer far larger than the
// caches, with ordinary 4 KiB pages and with transparent huge pages (what the decoder's weight
// arena asks for), split between the benchmark's threads as the decoder splits a matrix's rows.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>

namespace {

constexpr std::size_t kBytes = 512ull << 20;

std::byte* buffer(bool huge) {
  static std::byte* bufs[2] = {nullptr, nullptr};
  std::byte*& b = bufs[huge];
  if (!b) {
    constexpr std::size_t kHuge = 2ull << 20;
    void* raw = ::mmap(nullptr, kBytes + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    auto* p = static_cast<std::byte*>(raw);
    p += (kHuge - reinterpret_cast<uintptr_t>(p) % kHuge) % kHuge;
    ::madvise(p, kBytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    std::memset(p, 1, kBytes);
    b = p;
  }
  return b;
}

__attribute__((target("avx2"))) float read_all(const std::byte* p, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  const auto* f = reinterpret_cast<const float*>(p);
  for (std::size_t i = 0; i < n / 4; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_load_ps(f + i));
    s1 = _mm256_add_ps(s1, _mm256_load_ps(f + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_load_ps(f + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_load_ps(f + i + 24));
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}

void read_bandwidth(benchmark::State& state, bool huge) {
  static std::byte* b = nullptr;
  if (state.thread_index() == 0) b = buffer(huge);
  // Threads start together after the setup above (Google Benchmark's barrier).
  const std::size_t part = kBytes / static_cast<std::size_t>(state.threads());
  const std::byte* p = nullptr;
  for (auto _ : state) {
    if (!p) p = b + part * static_cast<std::size_t>(state.thread_index());
    benchmark::DoNotOptimize(read_all(p, part));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(part));
}

void BM_ReadPages4K(benchmark::State& s) { read_bandwidth(s, false); }
void BM_ReadHugePages(benchmark::State& s) { read_bandwidth(s, true); }

BENCHMARK(BM_ReadPages4K)->Threads(1)->Threads(2)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_ReadHugePages)->Threads(1)->Threads(2)->UseRealTime()->MinTime(1.0);

}  // namespace
