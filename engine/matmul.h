// equilab — matrix products on OpenBLAS sgemm, and the fused linear layer op.
#pragma once
#include "engine/tensor.h"

namespace eq {

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op = transpose when trans_* is true. The single entry point
// to cblas_sgemm for every kernel (conv, deform conv, ICON, ...).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The naive triple loop, kept next to the fast one for tests.
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// [M,K] x [K,N] -> [M,N];  batched: [B,M,K] x [B,K,N] -> [B,M,N].
Tensor matmul(const Tensor& a, const Tensor& b);

// y = x w^T + b: x [N, in], w [out, in], b [out] or undefined -> [N, out].
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

}  // namespace eq
