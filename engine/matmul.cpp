// equilab — matrix products: the gemm entry point to OpenBLAS, matmul (2-D and batched) and the fused linear op.
//
// Conventions: every matrix is row-major. A matrix with R rows and C columns stored with leading dimension ld has
// element (r, c) at p[r * ld + c], ld >= C. gemm's M, N, K are the sizes of the PRODUCT, after any transpose:
// op(A) is [M, K], op(B) is [K, N], C is [M, N]. So with trans_a the stored A is [K, M] (lda >= M), and with
// trans_b the stored B is [N, K] (ldb >= K).
#include "engine/matmul.h"

#include <cblas.h>

#include <climits>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {


// ---------------------------------------------------------------------------------------------------------------
// gemm
// ---------------------------------------------------------------------------------------------------------------

namespace {

// Degenerate products that BLAS implementations treat inconsistently: no output, or an empty sum (C = beta C).
bool gemm_degenerate(int64_t M, int64_t N, int64_t K, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return true;
  if (K > 0) return false;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
  return true;
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M=", M, " N=", N, " K=", K);
  // cblas takes 32-bit ints: a larger matrix must be split by the caller.
  check(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX,
        "gemm: sizes exceed the 32-bit BLAS interface (M=", M, " N=", N, " K=", K, ")");
  if (gemm_degenerate(M, N, K, beta, C, ldc)) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B,
              static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        sum += static_cast<double>(a) * b;
      }
      float& c = C[i * ldc + j];
      c = static_cast<float>(alpha * sum + (beta == 0 ? 0.0 : static_cast<double>(beta) * c));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// matmul: [M,K] x [K,N] -> [M,N], or batched [B,M,K] x [B,K,N] -> [B,M,N].
// Backward:  dA += dC B^T,  dB += A^T dC  (gemm with beta = 1 accumulates straight into the gradients).
// ---------------------------------------------------------------------------------------------------------------

namespace {

// Runs body(b) for b in [0, batch). Many small products: one per thread, each sgemm single-threaded (OpenBLAS
// detects the parallel region). Few or large products: serially, and each sgemm uses every thread.
template <class Body>
void for_each_matrix(int64_t batch, int64_t flops_per_matrix, Body body) {
  const bool per_thread = batch >= 2 * num_threads() && flops_per_matrix < (int64_t{1} << 24);
  if (per_thread) {
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < batch; ++b) body(b);
  } else {
    for (int64_t b = 0; b < batch; ++b) body(b);
  }
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  check((a.dim() == 2 && b.dim() == 2) || (a.dim() == 3 && b.dim() == 3),
        "matmul: expected two 2-D [M, K] x [K, N] or two 3-D [B, M, K] x [B, K, N] tensors, got ", sa, " and ", sb);
  const bool batched = a.dim() == 3;
  const int64_t B = batched ? sa[0] : 1;
  const int64_t M = sa[a.dim() - 2], K = sa[a.dim() - 1];
  const int64_t Kb = sb[b.dim() - 2], N = sb[b.dim() - 1];
  if (batched) check(sb[0] == B, "matmul: batch sizes differ (", sa, " x ", sb, ")");
  check(K == Kb, "matmul: inner sizes differ, ", K, " vs ", Kb, " (", sa, " x ", sb, ")");

  Tensor out(batched ? Shape{B, M, N} : Shape{M, N});
  const float *pa = a.data(), *pb = b.data();
  float* po = out.data();
  for_each_matrix(B, 2 * M * N * K, [&](int64_t i) {
    gemm(false, false, M, N, K, 1.0f, pa + i * M * K, K, pb + i * K * N, N, 0.0f, po + i * M * N, N);
  });
  if (!any_requires_grad({&a, &b})) return out;

  // dA needs B and dB needs A: keep each only when the other side's gradient is wanted.
  Storage keep_a = b.requires_grad() ? a.impl()->data : nullptr;
  Storage keep_b = a.requires_grad() ? b.impl()->data : nullptr;
  record(out, "matmul", {a, b}, [keep_a, keep_b, B, M, N, K](const float* g, const std::vector<float*>& gin) {
    if (float* ga = gin[0]) {
      const float* vb = keep_b->data();
      for_each_matrix(B, 2 * M * N * K, [&](int64_t i) {  // dA[M,K] += dC[M,N] B^T
        gemm(false, true, M, K, N, 1.0f, g + i * M * N, N, vb + i * K * N, N, 1.0f, ga + i * M * K, K);
      });
    }
    if (float* gb = gin[1]) {
      const float* va = keep_a->data();
      for_each_matrix(B, 2 * M * N * K, [&](int64_t i) {  // dB[K,N] += A^T dC[M,N]
        gemm(true, false, K, N, M, 1.0f, va + i * M * K, K, g + i * M * N, N, 1.0f, gb + i * K * N, N);
      });
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// linear: y[N,out] = x[N,in] w[out,in]^T + b[out].
// Backward:  dx += dy w,  dw += dy^T x,  db += column sums of dy.
// ---------------------------------------------------------------------------------------------------------------

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  check(x.dim() == 2 && w.dim() == 2, "linear: expected x [N, in] and weight [out, in], got x ", x.shape(),
        " and weight ", w.shape());
  const int64_t N = x.size(0), in = x.size(1), out_features = w.size(0);
  check(w.size(1) == in, "linear: x has ", in, " features but weight expects ", w.size(1), " (x ", x.shape(),
        ", weight ", w.shape(), ")");
  if (b.defined())
    check(b.dim() == 1 && b.size(0) == out_features, "linear: bias ", b.shape(), " does not match weight ",
          w.shape(), " (expected [", out_features, "])");

  Tensor y({N, out_features});
  float* py = y.data();
  if (b.defined()) {
    const float* pbias = b.data();
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < out_features; ++j) py[i * out_features + j] = pbias[j];
  }
  gemm(false, true, N, out_features, in, 1.0f, x.data(), in, w.data(), in, b.defined() ? 1.0f : 0.0f, py,
       out_features);
  if (!any_requires_grad({&x, &w, &b})) return y;

  Storage keep_x = w.requires_grad() ? x.impl()->data : nullptr;
  Storage keep_w = x.requires_grad() ? w.impl()->data : nullptr;
  record(y, "linear", {x, w, b},
         [keep_x, keep_w, N, in, out_features](const float* g, const std::vector<float*>& gin) {
           if (float* gx = gin[0])  // dx[N,in] += dy[N,out] w[out,in]
             gemm(false, false, N, in, out_features, 1.0f, g, out_features, keep_w->data(), in, 1.0f, gx, in);
           if (float* gw = gin[1])  // dw[out,in] += dy^T[out,N] x[N,in]
             gemm(true, false, out_features, in, N, 1.0f, g, out_features, keep_x->data(), in, 1.0f, gw, in);
           if (float* gb = gin[2])
             for (int64_t i = 0; i < N; ++i)
               for (int64_t j = 0; j < out_features; ++j) gb[j] += g[i * out_features + j];
         });
  return y;
}

}  // namespace eq
