// equilab — thread count for our OpenMP loops and for OpenBLAS.
//
// We link the OpenMP flavour of OpenBLAS, so both share one thread pool; set_num_threads() sets both, and the
// --threads flag of every app and OMP_NUM_THREADS end up here. Kernels parallelise their outermost independent
// loop with `#pragma omp parallel for` and never call sgemm from inside a parallel region unless they first
// pin BLAS to one thread (see ScopedSingleThreadBlas) — nested pools would oversubscribe the cores.
#pragma once

namespace eq {

void set_num_threads(int n);  // n <= 0: keep the OpenMP default (OMP_NUM_THREADS or all cores)
int num_threads();

// Below this many elements an elementwise loop runs on one thread: waking the pool costs more than it saves.
constexpr long kParallelGrain = 1 << 15;

}  // namespace eq
