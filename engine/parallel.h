// equilab — thread count for our OpenMP loops and for OpenBLAS.
//
// We link the OpenMP flavour of OpenBLAS, so both share one thread pool; set_num_threads() sets both, and the
// --threads flag of every app and OMP_NUM_THREADS end up here. Kernels parallelise their outermost independent
// loop with `#pragma omp parallel for`. OpenBLAS's OpenMP build runs single-threaded when called inside a
// parallel region, so a kernel may call one sgemm per thread (per sample or tile) there without nesting pools;
// outside a region sgemm uses all threads itself.
#pragma once

namespace eq {

void set_num_threads(int n);  // n <= 0: keep the OpenMP default (OMP_NUM_THREADS or all cores)
int num_threads();

// Below this many elements an elementwise loop runs on one thread: waking the pool costs more than it saves.
constexpr long kParallelGrain = 1 << 15;

}  // namespace eq
