#include "engine/parallel.h"

#include <omp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);

namespace eq {

void set_num_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

const char* blas_kernel_name() { return openblas_get_corename(); }

void use_fast_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice, or we already re-executed
  if (std::strcmp(openblas_get_corename(), "Prescott") != 0) return;  // OpenBLAS knows this CPU
  const char* kernels = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    kernels = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    kernels = "Haswell";
  }
  if (kernels == nullptr) return;  // an old CPU: Prescott is right
  std::fprintf(stderr, "equilab: OpenBLAS did not recognise this CPU (it chose Prescott); restarting with "
                       "OPENBLAS_CORETYPE=%s\n", kernels);
  setenv("OPENBLAS_CORETYPE", kernels, 1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "equilab: restart failed (%s); going on with the Prescott kernels\n", std::strerror(errno));
}

}  // namespace eq
