#include "engine/norm.h"

#include <cmath>
#include <memory>
#include <vector>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

// ---------------------------------------------------------------------------------------------------------------
// Batch normalisation. x is viewed as [N, C, S] with S the product of the trailing axes (S = 1 for [N, C]);
// channel c owns the N*S values x[n, c, s], and M = N*S is the count its statistics are taken over.
//
//   xhat = (x - mean_c) * inv_std_c,   inv_std_c = 1 / sqrt(var_c + eps),   y = gamma_c * xhat + beta_c
//
// Training uses the batch mean and the biased batch variance (divide by M), as PyTorch does; the running
// variance is updated with the unbiased one (divide by M - 1). Every loop runs over channels, which are
// independent, so each thread owns its channel's outputs and gradients.
// ---------------------------------------------------------------------------------------------------------------

namespace {

struct ChannelLayout {
  int64_t n, c, s;  // x is [n, c, s]
  int64_t at(int64_t in, int64_t ic, int64_t is) const { return (in * c + ic) * s + is; }
};

void check_channel_vector(const Tensor& t, int64_t channels, const char* what, const Shape& x_shape) {
  if (!t.defined()) return;
  if (t.shape() != Shape{channels})
    fail("batch_norm: ", what, " has shape ", t.shape(), " but the input ", x_shape, " has ", channels,
         " channels (expected [", channels, "])");
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean, Tensor& running_var,
                  bool training, float momentum, float eps) {
  if (x.dim() < 2) fail("batch_norm: input must be [N, C] or [N, C, ...], got shape ", x.shape());
  const ChannelLayout L{x.size(0), x.size(1), x.numel() / std::max<int64_t>(1, x.size(0) * x.size(1))};
  check_channel_vector(gamma, L.c, "gamma", x.shape());
  check_channel_vector(beta, L.c, "beta", x.shape());
  check_channel_vector(running_mean, L.c, "running_mean", x.shape());
  check_channel_vector(running_var, L.c, "running_var", x.shape());
  if (running_mean.defined() != running_var.defined())
    fail("batch_norm: running_mean and running_var must both be given or both be undefined (input ", x.shape(), ")");
  if (!(eps > 0)) fail("batch_norm: eps must be positive, got ", eps);
  if (!(momentum >= 0 && momentum <= 1)) fail("batch_norm: momentum must be in [0, 1], got ", momentum);

  // Without running statistics (PyTorch's track_running_stats=False) the batch statistics are used in both modes.
  const bool use_batch_stats = training || !running_mean.defined();
  const int64_t M = L.n * L.s;
  if (use_batch_stats && M < 2)
    fail("batch_norm: batch statistics need more than one value per channel, input ", x.shape(), " has ", M);

  std::vector<float> mean(static_cast<size_t>(L.c)), inv_std(static_cast<size_t>(L.c));
  Tensor y(x.shape());
  const float* px = x.data();
  float* py = y.data();
  const float* pg = gamma.defined() ? gamma.data() : nullptr;
  const float* pb = beta.defined() ? beta.data() : nullptr;
  float* prm = running_mean.defined() ? running_mean.data() : nullptr;
  float* prv = running_var.defined() ? running_var.data() : nullptr;
  const bool update_running = training && prm;

#pragma omp parallel for if (x.numel() > kParallelGrain)
  for (int64_t c = 0; c < L.c; ++c) {
    double m, var;
    if (use_batch_stats) {
      // Two passes in double: the one-pass E[x^2] - E[x]^2 loses everything when |mean| >> std.
      double sum = 0;
      for (int64_t n = 0; n < L.n; ++n)
        for (int64_t s = 0; s < L.s; ++s) sum += px[L.at(n, c, s)];
      m = sum / static_cast<double>(M);
      double sq = 0;
      for (int64_t n = 0; n < L.n; ++n)
        for (int64_t s = 0; s < L.s; ++s) {
          const double d = px[L.at(n, c, s)] - m;
          sq += d * d;
        }
      var = sq / static_cast<double>(M);
      if (update_running) {
        prm[c] = static_cast<float>((1.0 - momentum) * prm[c] + momentum * m);
        prv[c] = static_cast<float>((1.0 - momentum) * prv[c] + momentum * sq / static_cast<double>(M - 1));
      }
    } else {
      m = prm[c];
      var = prv[c];
    }
    const float mc = static_cast<float>(m);
    const float ic = static_cast<float>(1.0 / std::sqrt(var + eps));
    mean[static_cast<size_t>(c)] = mc;
    inv_std[static_cast<size_t>(c)] = ic;
    const float g = pg ? pg[c] : 1.0f, b = pb ? pb[c] : 0.0f;
    for (int64_t n = 0; n < L.n; ++n)
      for (int64_t s = 0; s < L.s; ++s) {
        const int64_t i = L.at(n, c, s);
        py[i] = g * ((px[i] - mc) * ic) + b;
      }
  }

  if (!any_requires_grad({&x, &gamma, &beta})) return y;

  // The backward recomputes xhat from x (shared storage, no copy) and the per-channel mean and inv_std.
  auto x_data = x.impl()->data;
  auto gamma_data = gamma.defined() ? gamma.impl()->data : nullptr;
  record(y, "batch_norm", {x, gamma, beta},
         [x_data, gamma_data, L, M, use_batch_stats, mean = std::move(mean), inv_std = std::move(inv_std)](
             const float* dy, const std::vector<float*>& gin) {
           const float* px = x_data->data();
           float *dx = gin[0], *dgamma = gin[1], *dbeta = gin[2];
#pragma omp parallel for if (L.n * L.c * L.s > kParallelGrain)
           for (int64_t c = 0; c < L.c; ++c) {
             const float mc = mean[static_cast<size_t>(c)], ic = inv_std[static_cast<size_t>(c)];
             double sum_dy = 0, sum_dy_xhat = 0;
             for (int64_t n = 0; n < L.n; ++n)
               for (int64_t s = 0; s < L.s; ++s) {
                 const int64_t i = L.at(n, c, s);
                 sum_dy += dy[i];
                 sum_dy_xhat += static_cast<double>(dy[i]) * ((px[i] - mc) * ic);
               }
             if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat);
             if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
             if (!dx) continue;
             const float g = gamma_data ? (*gamma_data)[static_cast<size_t>(c)] : 1.0f;
             if (use_batch_stats) {
               // dx = (1/M) gamma inv_std (M dy - sum(dy) - xhat sum(dy xhat)): the mean and variance depend on x.
               const float scale = g * ic / static_cast<float>(M);
               const float sdy = static_cast<float>(sum_dy), sdy_xhat = static_cast<float>(sum_dy_xhat);
               for (int64_t n = 0; n < L.n; ++n)
                 for (int64_t s = 0; s < L.s; ++s) {
                   const int64_t i = L.at(n, c, s);
                   const float xhat = (px[i] - mc) * ic;
                   dx[i] += scale * (static_cast<float>(M) * dy[i] - sdy - xhat * sdy_xhat);
                 }
             } else {
               // Running statistics are constants: the op is an affine map per channel.
               const float scale = g * ic;
               for (int64_t n = 0; n < L.n; ++n)
                 for (int64_t s = 0; s < L.s; ++s) dx[L.at(n, c, s)] += scale * dy[L.at(n, c, s)];
             }
           }
         });
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
// Dropout (inverted): y = x * keep / (1 - p), keep ~ Bernoulli(1 - p), so E[y] = x and evaluation needs no
// rescaling. The mask is drawn serially from `rng`, so a seed reproduces it whatever the thread count.
// ---------------------------------------------------------------------------------------------------------------

Tensor dropout(const Tensor& x, float p, bool training, Rng& rng) {
  if (!(p >= 0.0f && p < 1.0f)) fail("dropout: p must be in [0, 1), got ", p, " (input ", x.shape(), ")");
  if (!training || p == 0.0f) return x;
  const int64_t n = x.numel();
  auto keep = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) (*keep)[static_cast<size_t>(i)] = rng.uniform() >= p;
  const float scale = 1.0f / (1.0f - p);
  Tensor y(x.shape());
  const float* px = x.data();
  float* py = y.data();
  const uint8_t* pk = keep->data();
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) py[i] = pk[i] ? px[i] * scale : 0.0f;
  if (!any_requires_grad({&x})) return y;
  record(y, "dropout", {x}, [keep, scale, n](const float* dy, const std::vector<float*>& gin) {
    float* dx = gin[0];
    const uint8_t* pk = keep->data();
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i)
      if (pk[i]) dx[i] += scale * dy[i];
  });
  return y;
}

}  // namespace eq
