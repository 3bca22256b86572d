#include "engine/reduce.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

namespace {

// Lanes of the inner axis handled by one task: the accumulators live on the stack and the loop over them vectorises.
constexpr int64_t kTile = 256;
// Length of one partial sum when a whole contiguous run is reduced ([outer, R, 1]); a fixed size keeps the result
// independent of the thread count.
constexpr int64_t kChunk = 4096;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t product(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

// ---------------------------------------------------------------------------------------------------------------
// Planning: an axis set becomes a shape with adjacent axes of the same kind (kept/reduced) merged, e.g.
// [2, 3, 4, 5] reducing {1, 2} -> merged [2, 12, 5] with reduced [no, yes, no]. Size-1 axes are dropped (they do
// not change the memory layout).
// ---------------------------------------------------------------------------------------------------------------

struct ReducePlan {
  Shape out_shape;            // the result shape, keepdim applied
  Shape merged;               // the merged input shape (at least one axis)
  std::vector<char> reduced;  // per merged axis
  int64_t count = 1;          // input values per output value
};

// Normalises, checks for repeats, sorts.
std::vector<int> normalize_axes(std::vector<int> axes, const Shape& shape, const char* op) {
  if (axes.empty()) fail(op, ": empty axis list for shape ", shape, " (call ", op, "(x) to reduce every axis)");
  std::vector<int> norm;
  for (int a : axes) {
    const int n = normalize_axis(a, shape, op);
    if (std::find(norm.begin(), norm.end(), n) != norm.end())
      fail(op, ": axis ", a, " appears twice in the axis list for shape ", shape);
    norm.push_back(n);
  }
  std::sort(norm.begin(), norm.end());
  return norm;
}

ReducePlan plan_reduction(const Shape& shape, const std::vector<int>& axes, bool keepdim) {
  ReducePlan plan;
  for (size_t a = 0; a < shape.size(); ++a) {
    const bool red = std::find(axes.begin(), axes.end(), static_cast<int>(a)) != axes.end();
    if (red) plan.count *= shape[a];
    if (!red) plan.out_shape.push_back(shape[a]);
    else if (keepdim) plan.out_shape.push_back(1);
    if (shape[a] == 1) continue;
    if (!plan.merged.empty() && plan.reduced.back() == red) {
      plan.merged.back() *= shape[a];
    } else {
      plan.merged.push_back(shape[a]);
      plan.reduced.push_back(red);
    }
  }
  if (plan.merged.empty()) plan.merged = {1}, plan.reduced = {0};
  return plan;
}

// ---------------------------------------------------------------------------------------------------------------
// Sum kernels
// ---------------------------------------------------------------------------------------------------------------

// out[o, i] = scale * sum_r in[o, r, i]
void sum_blocks(const float* in, float* out, int64_t outer, int64_t R, int64_t inner, double scale) {
  const bool parallel = outer * R * inner > kParallelGrain;
  if (inner == 1) {
    const int64_t chunks = std::max<int64_t>(1, ceil_div(R, kChunk));
    std::vector<double> partial(static_cast<size_t>(outer * chunks));
#pragma omp parallel for if (parallel)
    for (int64_t t = 0; t < outer * chunks; ++t) {
      const int64_t o = t / chunks, r0 = (t % chunks) * kChunk, r1 = std::min(R, r0 + kChunk);
      const float* p = in + o * R;
      double acc = 0;
      for (int64_t r = r0; r < r1; ++r) acc += p[r];
      partial[static_cast<size_t>(t)] = acc;
    }
    for (int64_t o = 0; o < outer; ++o) {
      double s = 0;
      for (int64_t c = 0; c < chunks; ++c) s += partial[static_cast<size_t>(o * chunks + c)];
      out[o] = static_cast<float>(s * scale);
    }
    return;
  }
  const int64_t tiles = ceil_div(inner, kTile);
#pragma omp parallel for if (parallel)
  for (int64_t t = 0; t < outer * tiles; ++t) {
    const int64_t o = t / tiles, i0 = (t % tiles) * kTile, w = std::min(kTile, inner - i0);
    double acc[kTile] = {};
    for (int64_t r = 0; r < R; ++r) {
      const float* row = in + (o * R + r) * inner + i0;
      for (int64_t j = 0; j < w; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < w; ++j) out[o * inner + i0 + j] = static_cast<float>(acc[j] * scale);
  }
}

// Reduces every merged axis marked in plan.reduced, one run per pass from the last to the first, so each pass is a
// plain [outer, R, inner] block reduction. The final pass (the first reduced axis) writes into `out` and applies
// `scale`.
void sum_planned(const float* in, float* out, const ReducePlan& plan, double scale) {
  Shape cur = plan.merged;
  const int rank = static_cast<int>(cur.size());
  int first = rank, last = -1;
  for (int k = 0; k < rank; ++k)
    if (plan.reduced[static_cast<size_t>(k)]) first = std::min(first, k), last = k;
  if (last < 0) {  // only size-1 axes were named: a scaled copy
    const int64_t n = shape_numel(cur);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i] * scale);
    return;
  }
  std::vector<float> buffers[2];
  const float* src = in;
  int which = 0;
  for (int k = last; k >= first; --k) {
    if (!plan.reduced[static_cast<size_t>(k)]) continue;
    const size_t ks = static_cast<size_t>(k);
    const int64_t outer = product(cur, 0, ks), R = cur[ks], inner = product(cur, ks + 1, cur.size());
    float* dst = out;
    if (k != first) {
      buffers[which].assign(static_cast<size_t>(outer * inner), 0.0f);
      dst = buffers[which].data();
      which ^= 1;
    }
    sum_blocks(src, dst, outer, R, inner, k == first ? scale : 1.0);
    cur[ks] = 1;
    src = dst;
  }
}

// gin[idx] += scale * g[idx with the reduced axes set to 0], over the merged input shape: the backward of a sum,
// which broadcasts the output gradient back over the reduced axes. Each input element is written once.
void broadcast_back(const float* g, float* gin, const ReducePlan& plan, float scale) {
  const Shape& s = plan.merged;
  const int rank = static_cast<int>(s.size());
  std::vector<int64_t> gstride(s.size());
  int64_t running = 1;
  for (int k = rank - 1; k >= 0; --k) {
    const bool red = plan.reduced[static_cast<size_t>(k)];
    gstride[static_cast<size_t>(k)] = red ? 0 : running;
    if (!red) running *= s[static_cast<size_t>(k)];
  }
  const int64_t L = s.back(), rows = product(s, 0, s.size() - 1), tiles = ceil_div(L, kTile);
  const int64_t lstride = gstride.back();
#pragma omp parallel for if (rows * L > kParallelGrain)
  for (int64_t t = 0; t < rows * tiles; ++t) {
    const int64_t row = t / tiles, j0 = (t % tiles) * kTile, j1 = std::min(L, j0 + kTile);
    int64_t goff = 0;
    for (int64_t k = rank - 2, r = row; k >= 0; --k) {
      goff += (r % s[static_cast<size_t>(k)]) * gstride[static_cast<size_t>(k)];
      r /= s[static_cast<size_t>(k)];
    }
    float* dst = gin + row * L;
    for (int64_t j = j0; j < j1; ++j) dst[j] += scale * g[goff + j * lstride];
  }
}

Tensor reduce_sum(const Tensor& x, const std::vector<int>& axes, bool keepdim, bool is_mean, const char* op) {
  const ReducePlan plan = plan_reduction(x.shape(), axes, keepdim);
  // mean over zero elements is 0/0 = nan, as in NumPy and PyTorch.
  const double scale = is_mean ? (plan.count == 0 ? NAN : 1.0 / static_cast<double>(plan.count)) : 1.0;
  Tensor out(plan.out_shape);
  sum_planned(x.data(), out.data(), plan, scale);
  if (!any_requires_grad({&x})) return out;
  record(out, op, {x}, [plan, scale](const float* g, const std::vector<float*>& gin) {
    broadcast_back(g, gin[0], plan, static_cast<float>(scale));
  });
  return out;
}

std::vector<int> all_axes(const Tensor& x) {
  std::vector<int> axes(static_cast<size_t>(x.dim()));
  for (int a = 0; a < x.dim(); ++a) axes[static_cast<size_t>(a)] = a;
  return axes;
}

// ---------------------------------------------------------------------------------------------------------------
// Max / min along one axis: [outer, R, inner] -> values and the index r of the first extremal element.
// ---------------------------------------------------------------------------------------------------------------

template <bool IsMax>
inline bool better(float v, float best) {
  return (IsMax ? v > best : v < best) || (std::isnan(v) && !std::isnan(best));
}

template <bool IsMax>
void extremum_blocks(const float* in, float* out, int64_t* arg, int64_t outer, int64_t R, int64_t inner) {
  const int64_t tiles = ceil_div(inner, kTile);
#pragma omp parallel for if (outer * R * inner > kParallelGrain)
  for (int64_t t = 0; t < outer * tiles; ++t) {
    const int64_t o = t / tiles, i0 = (t % tiles) * kTile, w = std::min(kTile, inner - i0);
    float best[kTile];
    int64_t where[kTile];
    const float* first = in + o * R * inner + i0;
    for (int64_t j = 0; j < w; ++j) best[j] = first[j], where[j] = 0;
    for (int64_t r = 1; r < R; ++r) {
      const float* row = first + r * inner;
      for (int64_t j = 0; j < w; ++j)
        if (better<IsMax>(row[j], best[j])) best[j] = row[j], where[j] = r;
    }
    for (int64_t j = 0; j < w; ++j) out[o * inner + i0 + j] = best[j], arg[o * inner + i0 + j] = where[j];
  }
}

template <bool IsMax>
Tensor extremum(const Tensor& x, int axis, bool keepdim, const char* op) {
  const Shape& s = x.shape();
  const int a = normalize_axis(axis, s, op);
  const int64_t R = s[static_cast<size_t>(a)];
  if (R == 0) fail(op, ": cannot reduce axis ", axis, " of size 0 (shape ", s, ")");
  const int64_t outer = product(s, 0, static_cast<size_t>(a)), inner = product(s, static_cast<size_t>(a) + 1, s.size());
  Shape out_shape = s;
  if (keepdim) out_shape[static_cast<size_t>(a)] = 1;
  else out_shape.erase(out_shape.begin() + a);
  Tensor out(out_shape);
  auto arg = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(outer * inner));
  extremum_blocks<IsMax>(x.data(), out.data(), arg->data(), outer, R, inner);
  if (!any_requires_grad({&x})) return out;
  record(out, op, {x}, [arg, R, inner](const float* g, const std::vector<float*>& gin) {
    const int64_t n = static_cast<int64_t>(arg->size());
    const int64_t* where = arg->data();
    float* gx = gin[0];
    // Each output (o, i) owns a distinct input element, so the loop is parallel without atomics.
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t k = 0; k < n; ++k) {
      const int64_t o = k / inner, i = k % inner;
      gx[(o * R + where[k]) * inner + i] += g[k];
    }
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) { return reduce_sum(x, all_axes(x), false, false, "sum"); }
Tensor mean(const Tensor& x) { return reduce_sum(x, all_axes(x), false, true, "mean"); }

Tensor sum(const Tensor& x, std::vector<int> axes, bool keepdim) {
  return reduce_sum(x, normalize_axes(std::move(axes), x.shape(), "sum"), keepdim, false, "sum");
}

Tensor mean(const Tensor& x, std::vector<int> axes, bool keepdim) {
  return reduce_sum(x, normalize_axes(std::move(axes), x.shape(), "mean"), keepdim, true, "mean");
}

Tensor max(const Tensor& x, int axis, bool keepdim) { return extremum<true>(x, axis, keepdim, "max"); }
Tensor min(const Tensor& x, int axis, bool keepdim) { return extremum<false>(x, axis, keepdim, "min"); }

std::vector<int> argmax_rows(const Tensor& x) {
  if (x.dim() != 2) fail("argmax_rows: expected a [N, C] tensor, got shape ", x.shape());
  const int64_t N = x.shape()[0], C = x.shape()[1];
  if (C == 0) fail("argmax_rows: no classes to choose from (shape ", x.shape(), ")");
  std::vector<float> values(static_cast<size_t>(N));
  std::vector<int64_t> arg(static_cast<size_t>(N));
  extremum_blocks<true>(x.data(), values.data(), arg.data(), N, C, 1);
  return std::vector<int>(arg.begin(), arg.end());
}

Tensor sum_reference(const Tensor& x, std::vector<int> axes, bool keepdim) {
  const Shape& s = x.shape();
  const std::vector<int> norm = normalize_axes(std::move(axes), s, "sum_reference");
  const ReducePlan plan = plan_reduction(s, norm, keepdim);
  std::vector<double> acc(static_cast<size_t>(shape_numel(plan.out_shape)), 0.0);
  std::vector<int64_t> index(s.size(), 0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t flat = 0;  // the output position: the multi-index with reduced axes skipped
    for (size_t a = 0; a < s.size(); ++a)
      if (std::find(norm.begin(), norm.end(), static_cast<int>(a)) == norm.end()) flat = flat * s[a] + index[a];
    acc[static_cast<size_t>(flat)] += x.data()[i];
    for (int a = static_cast<int>(s.size()) - 1; a >= 0; --a) {  // odometer increment
      if (++index[static_cast<size_t>(a)] < s[static_cast<size_t>(a)]) break;
      index[static_cast<size_t>(a)] = 0;
    }
  }
  return Tensor::from(plan.out_shape, std::vector<float>(acc.begin(), acc.end()));
}

float contiguous_sum(const float* __restrict p, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
  float total = 0;
  for (; i < n; ++i) total += p[i];
  for (float a : acc) total += a;
  return total;
}

}  // namespace eq
