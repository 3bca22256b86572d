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

// OpenBLAS 0.3.21 (Debian bookworm) does not recognise some recent CPUs (here an AVX-512 Xeon, family 6 model
// 207) and falls back to its SSE3 "Prescott" kernels: sgemm 4x slower than the SkylakeX kernels on the same CPU.
// OPENBLAS_CORETYPE picks the kernels, but OpenBLAS reads it only while it loads, before main. So, when the
// variable is unset, OpenBLAS chose Prescott and the CPU has AVX-512 (F, BW, DQ, VL: "SkylakeX") or AVX2 + FMA
// ("Haswell"), this re-executes the program (/proc/self/exe, same argv) once with the variable set and prints a
// note to stderr. Otherwise, or if the re-execution fails, it returns and the program goes on as it is. Call it
// first thing in main; set OPENBLAS_CORETYPE yourself to choose another kernel or to keep the fallback.
void use_fast_blas_kernels(char** argv);
// The kernel family OpenBLAS is using ("SkylakeX", "Haswell", "Prescott", ...): for benchmark headers and logs.
const char* blas_kernel_name();

// Below this many elements an elementwise loop runs on one thread: waking the pool costs more than it saves.
constexpr long kParallelGrain = 1 << 15;

}  // namespace eq
