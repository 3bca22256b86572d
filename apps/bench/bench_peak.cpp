// equilab bench — the machine's arithmetic roof, fma_peak: every thread runs a loop of fused multiply-adds on
// registers only (no loads, no stores), as many independent chains as hide the FMA latency. A workload's GFLOP/s
// divided by fma_peak's, in the same run, is the share of the FMA peak it reaches; the ICON loss's floor in the
// README (its products at this rate, nothing else) comes from it. With AVX-512: 12 chains of 16 floats; with
// AVX2 + FMA: 10 chains of 8 (AVX2's 16 registers); without FMA a multiply and an add, still counted as 2 flops.
#include <immintrin.h>
#include <omp.h>

#include "apps/bench/bench.h"
#include "engine/parallel.h"

namespace eq::bench {
namespace {

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16, kChains = 12;
inline Vec splat(float v) { return _mm512_set1_ps(v); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float first_lane(Vec v) { return _mm512_cvtss_f32(v); }
#elif defined(__AVX__)
using Vec = __m256;
constexpr int kLanes = 8, kChains = 10;
inline Vec splat(float v) { return _mm256_set1_ps(v); }
#if defined(__FMA__)
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
#else
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_add_ps(_mm256_mul_ps(a, b), c); }
#endif
inline float first_lane(Vec v) { return _mm256_cvtss_f32(v); }
#else
using Vec = __m128;
constexpr int kLanes = 4, kChains = 8;
inline Vec splat(float v) { return _mm_set1_ps(v); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
inline float first_lane(Vec v) { return _mm_cvtss_f32(v); }
#endif

constexpr long kSteps = 10'000'000;  // per thread and call: ~35 ms at 115 GFLOP/s per core with AVX-512

// The result goes to a volatile so that the compiler keeps the loop.
volatile float sink;

void fma_loop() {
#pragma omp parallel
  {
    Vec acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = splat(0.001f * static_cast<float>(c + omp_get_thread_num()));
    const Vec a = splat(0.9999f), b = splat(1e-4f);  // x -> 0.9999 x + 1e-4 stays near 1: no overflow, no denormals
    for (long s = 0; s < kSteps; ++s)
      for (int c = 0; c < kChains; ++c) acc[c] = fma(acc[c], a, b);
    float total = 0;
    for (int c = 0; c < kChains; ++c) total += first_lane(acc[c]);
    if (total == 12345.0f) sink = total;  // never true; the loop cannot be dropped
  }
}

std::vector<Workload> peak_workloads() {
  const double flops = 2.0 * kLanes * kChains * static_cast<double>(kSteps) * num_threads();
  return {{"fma_peak", fma_loop, flops, 5}};
}

Registrar peak_registrar("peak", peak_workloads);

}  // namespace
}  // namespace eq::bench
