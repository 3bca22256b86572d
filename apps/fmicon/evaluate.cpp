// equilab apps/fmicon — dense-feature evaluation: warped pairs with ground truth, PCK, label propagation (J), the
// positional-collapse diagnostic and the README picture. Definitions are in evaluate.h.
#include "apps/fmicon/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "apps/common/plot.h"
#include "augment/deformation.h"
#include "engine/autograd.h"
#include "engine/matmul.h"
#include "engine/resample.h"
#include "engine/rng.h"

namespace eq {

namespace {

constexpr double kPi = 3.14159265358979323846;

// The 2x3 map theta on normalised coordinates, acting on pixel coordinates of a size x size image
// (align_corners = false: normalised u = (2 j + 1) / size - 1).
struct PixelAffine {
  double m[6];
  double size;
  void apply(double x, double y, double& ox, double& oy) const {
    const double u = (2 * x + 1) / size - 1, v = (2 * y + 1) / size - 1;
    const double ou = m[0] * u + m[1] * v + m[2], ov = m[3] * u + m[4] * v + m[5];
    ox = ((ou + 1) * size - 1) / 2, oy = ((ov + 1) * size - 1) / 2;
  }
  PixelAffine inverse() const {
    const double det = m[0] * m[4] - m[1] * m[3];
    check(std::fabs(det) > 1e-3, "make_correspondence_set: random affine map is (nearly) singular (det ", det,
          "); lower affine_sigma");
    const double ia = m[4] / det, ib = -m[1] / det, ic = -m[3] / det, id = m[0] / det;
    return {{ia, ib, -(ia * m[2] + ib * m[5]), ic, id, -(ic * m[2] + id * m[5])}, size};
  }
};

// tau [size, size, 2] (pixel units, size >= 2) read bilinearly at pixel (x, y), clamped to the edge outside.
void read_field(const float* tau, int64_t size, double x, double y, double& tx, double& ty) {
  const double cx = std::clamp(x, 0.0, double(size - 1)), cy = std::clamp(y, 0.0, double(size - 1));
  const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(cx), size - 2);
  const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(cy), size - 2);
  const int64_t x1 = x0 + 1, y1 = y0 + 1;
  const double fx = cx - x0, fy = cy - y0;
  for (int c = 0; c < 2; ++c) {
    const double v00 = tau[(y0 * size + x0) * 2 + c], v01 = tau[(y0 * size + x1) * 2 + c];
    const double v10 = tau[(y1 * size + x0) * 2 + c], v11 = tau[(y1 * size + x1) * 2 + c];
    const double v = (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11);
    (c == 0 ? tx : ty) = v;
  }
}

bool inside(double x, double y, double lo, double hi) { return x >= lo && x <= hi && y >= lo && y <= hi; }

// Images [N, C, H, W] run through the extractor `batch` at a time -> [N, D, H, W], shape-checked.
Tensor extract(const FeatureFn& features, const Tensor& images, int64_t batch, const char* which) {
  NoGrad no_grad;
  const int64_t n = images.size(0), per_image = images.numel() / n, h = images.size(2), w = images.size(3);
  Tensor out;
  int64_t d = 0;
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t m = std::min(batch, n - start);
    Tensor chunk({m, images.size(1), h, w});
    std::copy(images.data() + start * per_image, images.data() + (start + m) * per_image, chunk.data());
    const Tensor f = features(chunk);
    check(f.defined() && f.dim() == 4 && f.size(0) == m && f.size(1) >= 1 && f.size(2) == h && f.size(3) == w &&
              (d == 0 || f.size(1) == d),
          "evaluate_dense_features: the feature extractor turned ", which, " images ", chunk.shape(), " into ",
          f.defined() ? f.shape() : Shape{}, "; expected [", m, ", D, ", h, ", ", w, "] with the same D for all");
    if (d == 0) {
      d = f.size(1);
      out = Tensor({n, d, h, w});
    }
    std::copy(f.data(), f.data() + f.numel(), out.data() + start * d * h * w);
  }
  return out;
}

// [N, D, H, W] -> [N, P, D] with every pixel's vector scaled to unit length (all-zero vectors stay zero), so that a
// row product is the cosine similarity.
Tensor unit_pixel_rows(const Tensor& f) {
  const int64_t n = f.size(0), d = f.size(1), p = f.size(2) * f.size(3);
  Tensor rows({n, p, d});
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < n; ++s) {
    const float* src = f.data() + s * d * p;
    float* dst = rows.data() + s * p * d;
    for (int64_t i = 0; i < p; ++i) {
      double norm2 = 0;
      for (int64_t c = 0; c < d; ++c) norm2 += double(src[c * p + i]) * src[c * p + i];
      const float scale = norm2 > 1e-24 ? static_cast<float>(1 / std::sqrt(norm2)) : 0.0f;
      for (int64_t c = 0; c < d; ++c) dst[i * d + c] = src[c * p + i] * scale;
    }
  }
  return rows;
}

void check_set(const CorrespondenceSet& set, const char* op) {
  const bool ok = set.a.defined() && set.a.dim() == 4 && set.b.defined() && set.b.shape() == set.a.shape() &&
                  set.a.size(0) >= 1 && set.target.defined() && set.valid.defined() && set.labels_a.defined() &&
                  set.labels_b.defined() && set.valid_b.defined() && set.regions >= 1;
  check(ok, op, ": incomplete correspondence set (a ", set.a.defined() ? set.a.shape() : Shape{}, ", b ",
        set.b.defined() ? set.b.shape() : Shape{}, "); build it with make_correspondence_set");
  const int64_t n = set.a.size(0), h = set.a.size(2), w = set.a.size(3);
  const Shape grid{n, h, w};
  check(set.target.shape() == Shape{n, h, w, 2} && set.valid.shape() == grid && set.labels_a.shape() == grid &&
            set.labels_b.shape() == grid && set.valid_b.shape() == grid,
        op, ": correspondence set shapes disagree: a ", set.a.shape(), ", target ", set.target.shape(), ", valid ",
        set.valid.shape(), ", labels_a ", set.labels_a.shape(), ", labels_b ", set.labels_b.shape(), ", valid_b ",
        set.valid_b.shape());
}

// For every row of `queries` [P, D] (unit rows), the indices of its `k` most similar rows of `keys` [P, D] and the
// similarities, best first (ties to the lower index). Computed in 256-row chunks, each chunk one single-threaded
// sgemm on its own OpenMP thread, so the output does not depend on the thread count.
void top_k_matches(const float* queries, const float* keys, int64_t p, int64_t d, int k, int32_t* index,
                   float* similarity) {
  constexpr int64_t kChunk = 256;
  const int64_t chunks = (p + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(dynamic)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t r0 = c * kChunk, rows = std::min(kChunk, p - r0);
    std::vector<float> s(static_cast<size_t>(rows * p));
    gemm(false, true, rows, p, d, 1.0f, queries + r0 * d, d, keys, d, 0.0f, s.data(), p);
    std::vector<int32_t> best_i(static_cast<size_t>(k));
    std::vector<float> best_s(static_cast<size_t>(k));
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = s.data() + r * p;
      int filled = 0;
      for (int64_t j = 0; j < p; ++j) {
        const float v = row[j];
        if (filled == k && !(v > best_s[k - 1])) continue;  // strict: an equal later index never displaces
        int at = filled < k ? filled++ : k - 1;
        while (at > 0 && v > best_s[at - 1]) {
          best_s[at] = best_s[at - 1], best_i[at] = best_i[at - 1];
          --at;
        }
        best_s[at] = v, best_i[at] = static_cast<int32_t>(j);
      }
      std::copy(best_i.begin(), best_i.end(), index + (r0 + r) * k);
      std::copy(best_s.begin(), best_s.end(), similarity + (r0 + r) * k);
    }
  }
}

// The 3 leading principal directions of rows x [M, D] (Jacobi eigen-decomposition of the D x D covariance, in
// double), projected and min-max stretched to [0, 1] -> [M, 3]. Fewer than 3 dimensions leave zero components.
std::vector<float> pca_rgb(const float* x, int64_t m, int64_t d) {
  std::vector<double> mean(static_cast<size_t>(d), 0.0), cov(static_cast<size_t>(d * d), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t a = 0; a < d; ++a) mean[a] += x[i * d + a] / double(m);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t a = 0; a < d; ++a) {
      const double xa = x[i * d + a] - mean[a];
      for (int64_t b = a; b < d; ++b) cov[a * d + b] += xa * (x[i * d + b] - mean[b]);
    }
  for (int64_t a = 0; a < d; ++a)
    for (int64_t b = 0; b < a; ++b) cov[a * d + b] = cov[b * d + a];
  // Cyclic Jacobi: rotate away off-diagonal entries; V accumulates the eigenvectors (columns).
  std::vector<double> v(static_cast<size_t>(d * d), 0.0);
  for (int64_t a = 0; a < d; ++a) v[a * d + a] = 1;
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0, diag = 0;
    for (int64_t a = 0; a < d; ++a) {
      diag += cov[a * d + a] * cov[a * d + a];
      for (int64_t b = a + 1; b < d; ++b) off += cov[a * d + b] * cov[a * d + b];
    }
    if (off <= 1e-22 * (diag + 1e-300)) break;
    for (int64_t p = 0; p < d; ++p)
      for (int64_t q = p + 1; q < d; ++q) {
        const double apq = cov[p * d + q];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (cov[q * d + q] - cov[p * d + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1 : -1) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int64_t k = 0; k < d; ++k) {  // columns p, q
          const double akp = cov[k * d + p], akq = cov[k * d + q];
          cov[k * d + p] = c * akp - s * akq, cov[k * d + q] = s * akp + c * akq;
        }
        for (int64_t k = 0; k < d; ++k) {  // rows p, q
          const double apk = cov[p * d + k], aqk = cov[q * d + k];
          cov[p * d + k] = c * apk - s * aqk, cov[q * d + k] = s * apk + c * aqk;
        }
        for (int64_t k = 0; k < d; ++k) {
          const double vkp = v[k * d + p], vkq = v[k * d + q];
          v[k * d + p] = c * vkp - s * vkq, v[k * d + q] = s * vkp + c * vkq;
        }
      }
  }
  std::vector<int64_t> order(static_cast<size_t>(d));
  for (int64_t a = 0; a < d; ++a) order[a] = a;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return cov[a * d + a] > cov[b * d + b]; });
  std::vector<float> rgb(static_cast<size_t>(m * 3), 0.0f);
  for (int comp = 0; comp < 3 && comp < d; ++comp) {
    const int64_t e = order[comp];
    double lo = 1e300, hi = -1e300;
    std::vector<double> proj(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) {
      double s = 0;
      for (int64_t a = 0; a < d; ++a) s += (x[i * d + a] - mean[a]) * v[a * d + e];
      proj[i] = s, lo = std::min(lo, s), hi = std::max(hi, s);
    }
    const double range = hi - lo > 1e-12 ? hi - lo : 1;
    for (int64_t i = 0; i < m; ++i) rgb[i * 3 + comp] = static_cast<float>((proj[i] - lo) / range);
  }
  return rgb;
}

// HSV (h in [0, 1), s, v in [0, 1]) -> RGB.
void hsv_to_rgb(double h, double s, double v, float* rgb) {
  const double h6 = (h - std::floor(h)) * 6;
  const int sector = static_cast<int>(h6) % 6;
  const double f = h6 - std::floor(h6), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const double table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  for (int c = 0; c < 3; ++c) rgb[c] = static_cast<float>(table[sector][c]);
}

// J in %: per pair, the IoU over valid_b pixels of every region present in labels_b, averaged over those regions;
// then averaged over pairs. predicted [N * P] holds a label for every valid_b pixel.
double mean_iou(const CorrespondenceSet& set, const std::vector<int>& predicted, const char* op) {
  const int64_t n = set.a.size(0), p = set.a.size(2) * set.a.size(3);
  const int regions = set.regions;
  double j_sum = 0;
  int64_t j_pairs = 0;
  for (int64_t s = 0; s < n; ++s) {
    std::vector<int64_t> inter(static_cast<size_t>(regions), 0), uni(inter.size(), 0), present(inter.size(), 0);
    for (int64_t at = s * p; at < (s + 1) * p; ++at) {
      if (set.valid_b.data()[at] <= 0) continue;
      const int truth = static_cast<int>(set.labels_b.data()[at]), pred = predicted[static_cast<size_t>(at)];
      check(truth >= 0 && truth < regions && pred >= 0 && pred < regions, op, ": label ", truth, " (truth) or ",
            pred, " (predicted) outside [0, ", regions, ") at a valid pixel of B");
      ++present[truth];
      if (pred == truth) {
        ++inter[truth], ++uni[truth];
      } else {
        ++uni[truth], ++uni[pred];
      }
    }
    double iou_sum = 0;
    int regions_present = 0;
    for (int r = 0; r < regions; ++r)
      if (present[r] > 0) iou_sum += double(inter[r]) / uni[r], ++regions_present;
    if (regions_present > 0) j_sum += iou_sum / regions_present, ++j_pairs;
  }
  return j_pairs > 0 ? 100.0 * j_sum / j_pairs : 0.0;
}

}  // namespace

CorrespondenceSet make_correspondence_set(const std::vector<Tensor>& photos, const CorrespondenceOptions& options) {
  const char* op = "make_correspondence_set";
  const int64_t count = options.count, size = options.size;
  check(count >= 2 && size >= 8 && options.regions >= 1, op,
        ": need count >= 2, size >= 8 and regions >= 1, got count ", count, ", size ", size, ", regions ",
        options.regions);
  check(std::isfinite(options.affine_sigma) && options.affine_sigma >= 0 && std::isfinite(options.translation_sigma) &&
            options.translation_sigma >= 0 && std::isfinite(options.elastic_gradient) &&
            options.elastic_gradient >= 0 && options.elastic_gradient < 1 &&
            std::isfinite(options.elastic_smoothness) && options.elastic_smoothness >= 0 &&
            options.valid_margin >= 0 && 2 * options.valid_margin < size - 1,
        op, ": need finite affine_sigma, translation_sigma >= 0, elastic_gradient in [0, 1) (the ground truth "
        "inverts the field by a contraction), elastic_smoothness >= 0 and valid_margin in [0, (size - 1) / 2), got ",
        options.affine_sigma, ", ", options.translation_sigma, ", ", options.elastic_gradient, ", ",
        options.elastic_smoothness, ", ", options.valid_margin);
  check(!photos.empty(), op, ": no photos");
  const int64_t channels = photos[0].defined() && photos[0].dim() == 3 ? photos[0].size(0) : 0;
  for (size_t i = 0; i < photos.size(); ++i) {
    const Tensor& ph = photos[i];
    check(ph.defined() && ph.dim() == 3 && ph.size(0) == channels && channels >= 1 && ph.size(1) >= size &&
              ph.size(2) >= size,
          op, ": photo ", i, " is ", ph.defined() ? ph.shape() : Shape{}, "; every photo must be [C, H, W] with the ",
          "same C (photo 0 has ", channels, ") and H, W >= size ", size);
  }

  Rng rng(options.seed);
  CorrespondenceSet set;
  set.regions = options.regions;
  set.a = Tensor({count, channels, size, size});
  const int64_t pixels = size * size;
  for (int64_t s = 0; s < count; ++s) {
    const Tensor& ph = photos[static_cast<size_t>(rng.randint(static_cast<int64_t>(photos.size())))];
    const int64_t h = ph.size(1), w = ph.size(2);
    const int64_t y0 = rng.randint(h - size + 1), x0 = rng.randint(w - size + 1);
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < size; ++i) {
        const float* src = ph.data() + (c * h + y0 + i) * w + x0;
        std::copy(src, src + size, set.a.data() + ((s * channels + c) * size + i) * size);
      }
  }
  std::vector<PixelAffine> affine(static_cast<size_t>(count));
  for (auto& t : affine) {
    const float sa = options.affine_sigma, st = options.translation_sigma;
    t = {{1 + sa * rng.normal(), sa * rng.normal(), st * rng.normal(), sa * rng.normal(), 1 + sa * rng.normal(),
          st * rng.normal()},
         double(size)};
  }
  const Tensor tau = smooth_random_field(count, size, size, options.elastic_smoothness, options.elastic_gradient, rng);

  // Backward map M(q) = theta(q - tau(q)) for every pixel q of B, and B sampled through it in one resampling.
  set.source = Tensor({count, size, size, 2});
  Tensor grid({count, size, size, 2});
  for (int64_t s = 0; s < count; ++s)
    for (int64_t i = 0; i < size; ++i)
      for (int64_t j = 0; j < size; ++j) {
        const int64_t at = ((s * size + i) * size + j) * 2;
        double mx, my;
        affine[s].apply(j - tau.data()[at], i - tau.data()[at + 1], mx, my);
        set.source.data()[at] = static_cast<float>(mx), set.source.data()[at + 1] = static_cast<float>(my);
        grid.data()[at] = static_cast<float>((2 * mx + 1) / size - 1);
        grid.data()[at + 1] = static_cast<float>((2 * my + 1) / size - 1);
      }
  {
    NoGrad no_grad;
    set.b = grid_sample(set.a, grid, {SampleMode::Bilinear, GridPadding::Zeros, false});
  }

  // Forward map: t(p) with M(t) = p, i.e. t = theta^-1(p) + tau(t), by fixed-point iteration.
  set.target = Tensor({count, size, size, 2});
  set.valid = Tensor({count, size, size});
  set.valid_b = Tensor({count, size, size});
  set.labels_a = Tensor({count, size, size});
  set.labels_b = Tensor({count, size, size});
  const double lo = options.valid_margin, hi = size - 1 - options.valid_margin;
  for (int64_t s = 0; s < count; ++s) {
    const PixelAffine inv = affine[s].inverse();
    const float* field = tau.data() + s * pixels * 2;
    for (int64_t i = 0; i < size; ++i)
      for (int64_t j = 0; j < size; ++j) {
        double bx, by;
        inv.apply(j, i, bx, by);
        double tx = bx, ty = by;
        for (int it = 0; it < 100; ++it) {
          double ex, ey;
          read_field(field, size, tx, ty, ex, ey);
          const double nx = bx + ex, ny = by + ey;
          const double step = std::fabs(nx - tx) + std::fabs(ny - ty);
          tx = nx, ty = ny;
          if (step < 1e-9) break;
        }
        double ex, ey, mx, my;
        read_field(field, size, tx, ty, ex, ey);
        affine[s].apply(tx - ex, ty - ey, mx, my);
        const bool converged = std::hypot(mx - j, my - i) <= 0.05;
        const int64_t at = (s * size + i) * size + j;
        set.target.data()[at * 2] = static_cast<float>(tx), set.target.data()[at * 2 + 1] = static_cast<float>(ty);
        // Both ends away from the borders: near A's edge, B's pixels around t already read zero padding.
        const bool p_inside = inside(j, i, lo, hi);
        set.valid.data()[at] = converged && p_inside && inside(tx, ty, lo, hi) ? 1.0f : 0.0f;
        const float* src = set.source.data() + at * 2;
        set.valid_b.data()[at] = p_inside && inside(src[0], src[1], lo, hi) ? 1.0f : 0.0f;
      }
    // Voronoi labels: on A at pixel centres, on B at the exact source point M(q).
    std::vector<double> seed_x(static_cast<size_t>(options.regions)), seed_y(seed_x.size());
    for (size_t r = 0; r < seed_x.size(); ++r)
      seed_x[r] = rng.uniform(0, size - 1), seed_y[r] = rng.uniform(0, size - 1);
    auto nearest_seed = [&](double x, double y) {
      int best = 0;
      double best_d = 1e300;
      for (size_t r = 0; r < seed_x.size(); ++r) {
        const double dd = (x - seed_x[r]) * (x - seed_x[r]) + (y - seed_y[r]) * (y - seed_y[r]);
        if (dd < best_d) best_d = dd, best = static_cast<int>(r);
      }
      return best;
    };
    for (int64_t i = 0; i < size; ++i)
      for (int64_t j = 0; j < size; ++j) {
        const int64_t at = (s * size + i) * size + j;
        set.labels_a.data()[at] = static_cast<float>(nearest_seed(j, i));
        const float* src = set.source.data() + at * 2;
        set.labels_b.data()[at] = set.valid_b.data()[at] > 0 ? static_cast<float>(nearest_seed(src[0], src[1])) : -1.0f;
      }
  }
  return set;
}

DenseEvalResult evaluate_dense_features(const FeatureFn& features, const CorrespondenceSet& set,
                                        const DenseEvalOptions& options) {
  const auto start_time = std::chrono::steady_clock::now();
  const char* op = "evaluate_dense_features";
  check(static_cast<bool>(features), op, ": no feature extractor");
  check_set(set, op);
  check(options.label_top_k >= 1 && options.label_temperature > 0 && std::isfinite(options.label_temperature) &&
            options.batch >= 1,
        op, ": need label_top_k >= 1, label_temperature > 0 and batch >= 1, got ", options.label_top_k, ", ",
        options.label_temperature, ", ", options.batch);
  const int64_t n = set.a.size(0), h = set.a.size(2), w = set.a.size(3), p = h * w;
  const int k = static_cast<int>(std::min<int64_t>(options.label_top_k, p));

  const Tensor fa = unit_pixel_rows(extract(features, set.a, options.batch, "A"));
  const Tensor fb = unit_pixel_rows(extract(features, set.b, options.batch, "B"));
  check(fa.size(2) == fb.size(2), op, ": feature dimension differs between A (", fa.size(2), ") and B (", fb.size(2),
        ")");
  const int64_t d = fa.size(2);

  // Nearest neighbour in B of every pixel of A (PCK), and the top-k pixels of A of every pixel of B (labels).
  std::vector<int32_t> nn_index(static_cast<size_t>(n * p)), knn_index(static_cast<size_t>(n * p * k));
  std::vector<float> nn_sim(nn_index.size()), knn_sim(knn_index.size());
  for (int64_t s = 0; s < n; ++s) {
    top_k_matches(fa.data() + s * p * d, fb.data() + s * p * d, p, d, 1, nn_index.data() + s * p,
                  nn_sim.data() + s * p);
    top_k_matches(fb.data() + s * p * d, fa.data() + s * p * d, p, d, k, knn_index.data() + s * p * k,
                  knn_sim.data() + s * p * k);
  }

  DenseEvalResult result;
  int64_t valid_count = 0, hits[3] = {0, 0, 0}, stay_hits = 0;
  for (int64_t s = 0; s < n; ++s)
    for (int64_t i = 0; i < p; ++i) {
      if (set.valid.data()[s * p + i] <= 0) continue;
      ++valid_count;
      const int32_t q = nn_index[s * p + i];
      const float* t = set.target.data() + (s * p + i) * 2;
      const double dx = (q % w) - t[0], dy = (q / w) - t[1];
      const double dist = std::sqrt(dx * dx + dy * dy);
      hits[0] += dist <= 1, hits[1] += dist <= 2, hits[2] += dist <= 4;
      stay_hits += std::hypot((i % w) - t[0], (i / w) - t[1]) <= 4;
    }
  check(valid_count > 0, op, ": no valid pixel in the set (a ", set.a.shape(), "); the warp is too strong");
  result.pck1 = 100.0 * hits[0] / valid_count;
  result.pck2 = 100.0 * hits[1] / valid_count;
  result.pck4 = 100.0 * hits[2] / valid_count;
  result.pck4_no_motion = 100.0 * stay_hits / valid_count;

  // Label propagation: softmax over the k best similarities (shifted by the best, sim[0]) votes for A's labels.
  const int regions = set.regions;
  std::vector<int> propagated(static_cast<size_t>(n * p), -1), stay_put(propagated.size(), -1);
  std::vector<double> votes(static_cast<size_t>(regions));
  for (int64_t at = 0; at < n * p; ++at) {
    if (set.valid_b.data()[at] <= 0) continue;
    const int64_t s = at / p;
    const int32_t* idx = knn_index.data() + at * k;
    const float* sim = knn_sim.data() + at * k;
    std::fill(votes.begin(), votes.end(), 0.0);
    for (int t = 0; t < k; ++t) {
      const int label = static_cast<int>(set.labels_a.data()[s * p + idx[t]]);
      if (label >= 0 && label < regions) votes[label] += std::exp((sim[t] - sim[0]) / options.label_temperature);
    }
    propagated[at] = static_cast<int>(std::max_element(votes.begin(), votes.end()) - votes.begin());
    stay_put[at] = static_cast<int>(set.labels_a.data()[at]);
  }
  result.label_iou = mean_iou(set, propagated, op);
  result.label_iou_no_motion = mean_iou(set, stay_put, op);

  // Collapse: adjusted share of the variance of A's unit features explained by position.
  std::vector<double> grand(static_cast<size_t>(d), 0.0);
  double within = 0, total = 0;
  for (int64_t i = 0; i < p; ++i) {
    for (int64_t c = 0; c < d; ++c) {
      double mean_here = 0;
      for (int64_t s = 0; s < n; ++s) mean_here += fa.data()[(s * p + i) * d + c];
      grand[c] += mean_here;
      mean_here /= n;
      for (int64_t s = 0; s < n; ++s) {
        const double e = fa.data()[(s * p + i) * d + c] - mean_here;
        within += e * e;
      }
    }
  }
  for (int64_t c = 0; c < d; ++c) grand[c] /= double(n * p);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t i = 0; i < p; ++i)
      for (int64_t c = 0; c < d; ++c) {
        const double e = fa.data()[(s * p + i) * d + c] - grand[c];
        total += e * e;
      }
  const double within_var = within / (double(p) * (n - 1)), total_var = total / (double(n) * p - 1);
  result.position_collapse = total_var > 1e-12 ? 1.0 - within_var / total_var : 1.0;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  return result;
}

FeatureFn raw_pixel_features() {
  return [](const Tensor& images) {
    check(images.defined() && images.dim() == 4, "raw_pixel_features: images must be [N, C, H, W], got ",
          images.defined() ? images.shape() : Shape{});
    const int64_t planes = images.size(0) * images.size(1), hw = images.size(2) * images.size(3);
    Tensor out(images.shape());
    for (int64_t plane = 0; plane < planes; ++plane) {
      const float* src = images.data() + plane * hw;
      double mean = 0;
      for (int64_t i = 0; i < hw; ++i) mean += src[i];
      mean /= double(hw);
      for (int64_t i = 0; i < hw; ++i) out.data()[plane * hw + i] = static_cast<float>(src[i] - mean);
    }
    return out;
  };
}

FeatureFn raw_patch_features(int radius) {
  check(radius >= 0 && radius <= 8, "raw_patch_features: radius must be in [0, 8], got ", radius);
  return [radius](const Tensor& images) {
    check(images.defined() && images.dim() == 4, "raw_patch_features: images must be [N, C, H, W], got ",
          images.defined() ? images.shape() : Shape{});
    const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
    const int64_t side = 2 * radius + 1, taps = c * side * side;
    Tensor out({n, taps, h, w});
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < n; ++s)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          // Feature index (ch, dy, dx) row-major; every tap read with zeros outside, then the patch mean removed.
          double mean = 0;
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t dy = -radius; dy <= radius; ++dy)
              for (int64_t dx = -radius; dx <= radius; ++dx) {
                const int64_t y = i + dy, x = j + dx;
                const float v = y >= 0 && y < h && x >= 0 && x < w ? images.data()[((s * c + ch) * h + y) * w + x] : 0;
                const int64_t f = (ch * side + dy + radius) * side + dx + radius;
                out.data()[((s * taps + f) * h + i) * w + j] = v;
                mean += v;
              }
          mean /= double(taps);
          for (int64_t f = 0; f < taps; ++f) out.data()[((s * taps + f) * h + i) * w + j] -= static_cast<float>(mean);
        }
    return out;
  };
}

void write_feature_pictures(const FeatureFn& features, const CorrespondenceSet& set, int rows,
                            const std::string& png_path) {
  const char* op = "write_feature_pictures";
  check(static_cast<bool>(features), op, ": no feature extractor (", png_path, ")");
  check_set(set, op);
  check(rows >= 1 && rows <= set.a.size(0), op, ": rows ", rows, " must be in [1, ", set.a.size(0), "] (", png_path,
        ")");
  const int64_t c = set.a.size(1), h = set.a.size(2), w = set.a.size(3), p = h * w;
  const Tensor a = Tensor::from({rows, c, h, w}, std::vector<float>(set.a.data(), set.a.data() + rows * c * p));
  const Tensor b = Tensor::from({rows, c, h, w}, std::vector<float>(set.b.data(), set.b.data() + rows * c * p));
  const Tensor fa = unit_pixel_rows(extract(features, a, rows, "A"));
  const Tensor fb = unit_pixel_rows(extract(features, b, rows, "B"));
  const int64_t d = fa.size(2);

  constexpr int kColumns = 6;
  Tensor tiles({rows * kColumns, 3, h, w});
  std::vector<std::string> captions;
  auto tile = [&](int64_t r, int col) { return tiles.data() + (r * kColumns + col) * 3 * p; };
  auto put_image = [&](const Tensor& src, int64_t r, float* dst) {  // C = 1 or 3 as is, else the channel mean
    for (int64_t i = 0; i < p; ++i)
      for (int64_t ch = 0; ch < 3; ++ch) {
        double v = 0;
        if (c == 3) v = src.data()[(r * c + ch) * p + i];
        else {
          for (int64_t cc = 0; cc < c; ++cc) v += src.data()[(r * c + cc) * p + i];
          v /= double(c);
        }
        dst[ch * p + i] = static_cast<float>(v);
      }
  };
  for (int64_t r = 0; r < rows; ++r) {
    put_image(a, r, tile(r, 0));
    put_image(b, r, tile(r, 1));
    // PCA of A's and B's features together.
    std::vector<float> pooled(static_cast<size_t>(2 * p * d));
    std::copy(fa.data() + r * p * d, fa.data() + (r + 1) * p * d, pooled.begin());
    std::copy(fb.data() + r * p * d, fb.data() + (r + 1) * p * d, pooled.begin() + p * d);
    const std::vector<float> rgb = pca_rgb(pooled.data(), 2 * p, d);
    for (int half = 0; half < 2; ++half)
      for (int64_t i = 0; i < p; ++i)
        for (int ch = 0; ch < 3; ++ch) tile(r, 2 + half)[ch * p + i] = rgb[(half * p + i) * 3 + ch];
    // Flow of the predicted match and of the truth.
    std::vector<int32_t> nn(static_cast<size_t>(p));
    std::vector<float> sim(nn.size());
    top_k_matches(fa.data() + r * p * d, fb.data() + r * p * d, p, d, 1, nn.data(), sim.data());
    const float* target = set.target.data() + r * p * 2;
    const float* valid = set.valid.data() + r * p;
    double largest = 1;
    for (int64_t i = 0; i < p; ++i)
      if (valid[i] > 0)
        largest = std::max(largest, std::hypot(double(target[i * 2]) - double(i % w),
                                               double(target[i * 2 + 1]) - double(i / w)));
    for (int which = 0; which < 2; ++which)
      for (int64_t i = 0; i < p; ++i) {
        float colour[3] = {0, 0, 0};
        if (valid[i] > 0) {
          const double dx = (which == 0 ? nn[i] % w : target[i * 2]) - double(i % w);
          const double dy = (which == 0 ? nn[i] / w : target[i * 2 + 1]) - double(i / w);
          hsv_to_rgb(std::atan2(dy, dx) / (2 * kPi) + 0.5, std::min(1.0, std::hypot(dx, dy) / largest), 1.0, colour);
        }
        for (int ch = 0; ch < 3; ++ch) tile(r, 4 + which)[ch * p + i] = colour[ch];
      }
    for (const char* caption : {"A", "B = warp(A)", "PCA feat A", "PCA feat B", "matched flow", "true flow"})
      captions.push_back(caption);
  }
  GridOptions grid;
  grid.columns = kColumns;
  grid.scale = h <= 64 ? 2 : 1;
  grid.captions = captions;
  grid.title = "features: PCA as RGB; flow A->B (hue = direction, saturation = length)";
  write_image_grid(png_path, tiles, grid);
}

}  // namespace eq
