#include "engine/shape_ops.h"

#include <algorithm>
#include <cstring>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

namespace {

int64_t product(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

// dst[i] (+)= src[i] for a run of n floats.
inline void copy_run(float* dst, const float* src, int64_t n, bool accumulate) {
  if (accumulate) {
    for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
  } else if (n > 0) {
    std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(n));
  }
}

std::string order_str(const std::vector<int>& order) {
  std::string s = "[";
  for (size_t i = 0; i < order.size(); ++i) s += (i ? ", " : "") + std::to_string(order[i]);
  return s + "]";
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Padding modes
// ---------------------------------------------------------------------------------------------------------------

const char* pad_mode_name(PadMode mode) {
  switch (mode) {
    case PadMode::Zeros: return "zeros";
    case PadMode::Reflect: return "reflect";
    case PadMode::Replicate: return "replicate";
    default: return "circular";
  }
}

PadMode parse_pad_mode(const std::string& name) {
  for (PadMode m : {PadMode::Zeros, PadMode::Reflect, PadMode::Replicate, PadMode::Circular})
    if (name == pad_mode_name(m)) return m;
  fail("parse_pad_mode: unknown padding mode '", name, "'; valid modes are zeros, reflect, replicate, circular");
}

int64_t pad_source_index(int64_t i, int64_t size, PadMode mode) {
  if (i >= 0 && i < size) return i;
  if (size <= 0) return -1;
  switch (mode) {
    case PadMode::Zeros: return -1;
    case PadMode::Replicate: return i < 0 ? 0 : size - 1;
    case PadMode::Circular: return ((i % size) + size) % size;
    default: {  // Reflect: the sequence 0 1 .. n-1 n-2 .. 1 repeats with period 2(n-1)
      if (size == 1) return 0;
      const int64_t period = 2 * (size - 1), m = ((i % period) + period) % period;
      return m < size ? m : period - m;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// reshape and its relatives: a new shape over the same storage. The gradient is the output's, element for element
// (record_view hands it over).
// ---------------------------------------------------------------------------------------------------------------

namespace {

Tensor view_as_shape(const Tensor& x, Shape shape, const char* op) {
  auto impl = std::make_shared<TensorImpl>();
  impl->data = x.impl()->data;
  impl->shape = std::move(shape);
  Tensor out(impl);
  record_view(out, op, x);
  return out;
}

}  // namespace

Tensor reshape(const Tensor& x, Shape shape) {
  const Shape& from = x.shape();
  int infer = -1;
  int64_t known = 1;
  for (size_t a = 0; a < shape.size(); ++a) {
    if (shape[a] == -1) {
      if (infer >= 0) fail("reshape: more than one -1 in the target shape ", shape, " (input ", from, ")");
      infer = static_cast<int>(a);
    } else if (shape[a] < 0) {
      fail("reshape: negative size ", shape[a], " in the target shape ", shape, " (input ", from, ")");
    } else {
      known *= shape[a];
    }
  }
  const int64_t n = x.numel();
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      fail("reshape: cannot infer the -1 axis of ", shape, " for input ", from, " (", n, " values)");
    shape[static_cast<size_t>(infer)] = n / known;
  } else if (known != n) {
    fail("reshape: cannot reshape ", from, " (", n, " values) into ", shape, " (", known, " values)");
  }
  return view_as_shape(x, std::move(shape), "reshape");
}

Tensor flatten(const Tensor& x, int start_axis) {
  const Shape& s = x.shape();
  const size_t a = static_cast<size_t>(normalize_axis(start_axis, s, "flatten"));
  Shape out(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(a));
  out.push_back(product(s, a, s.size()));
  return view_as_shape(x, std::move(out), "flatten");
}

Tensor unsqueeze(const Tensor& x, int axis) {
  const Shape& s = x.shape();
  const int rank = x.dim();
  if (axis < -(rank + 1) || axis > rank)
    fail("unsqueeze: axis ", axis, " out of range for shape ", s, " (valid: ", -(rank + 1), " to ", rank, ")");
  const int a = axis < 0 ? axis + rank + 1 : axis;
  Shape out = s;
  out.insert(out.begin() + a, 1);
  return view_as_shape(x, std::move(out), "unsqueeze");
}

Tensor squeeze(const Tensor& x, int axis) {
  const Shape& s = x.shape();
  const int a = normalize_axis(axis, s, "squeeze");
  if (s[static_cast<size_t>(a)] != 1)
    fail("squeeze: axis ", axis, " has size ", s[static_cast<size_t>(a)], ", not 1 (shape ", s, ")");
  Shape out = s;
  out.erase(out.begin() + a);
  return view_as_shape(x, std::move(out), "squeeze");
}

// ---------------------------------------------------------------------------------------------------------------
// permute
// ---------------------------------------------------------------------------------------------------------------

namespace {

// out (+)= in with its axes reordered (output axis k = input axis order[k]). Size-1 axes are dropped and axes
// that stay neighbours are merged first, so e.g. [N, C, H, W] -> [N, H, W, C] runs as a 3-axis [N, C, HW] ->
// [N, HW, C] move. Then each output row (all axes but the last) reads one strided input run.
void permute_kernel(const float* in, const Shape& in_shape, const std::vector<int>& order, float* out,
                    bool accumulate) {
  const int64_t n = shape_numel(in_shape);
  // Renumber the input axes of size > 1.
  std::vector<int> new_index(in_shape.size(), -1);
  Shape kept_shape;
  for (size_t a = 0; a < in_shape.size(); ++a)
    if (in_shape[a] != 1) new_index[a] = static_cast<int>(kept_shape.size()), kept_shape.push_back(in_shape[a]);
  std::vector<int> kept_order;
  for (int a : order)
    if (new_index[static_cast<size_t>(a)] >= 0) kept_order.push_back(new_index[static_cast<size_t>(a)]);
  // Groups of output axes that are consecutive input axes: (first input axis, merged size).
  std::vector<std::pair<int, int64_t>> groups;
  for (size_t k = 0; k < kept_order.size(); ++k) {
    const int a = kept_order[k];
    if (k > 0 && a == kept_order[k - 1] + 1) groups.back().second *= kept_shape[static_cast<size_t>(a)];
    else groups.push_back({a, kept_shape[static_cast<size_t>(a)]});
  }
  if (groups.size() <= 1) {  // the permutation moves nothing: a plain copy
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[i] = accumulate ? out[i] + in[i] : in[i];
    return;
  }
  // Merged input shape (groups sorted by input position) and each output group's stride in it.
  std::vector<size_t> by_input(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) by_input[g] = g;
  std::sort(by_input.begin(), by_input.end(), [&](size_t p, size_t q) { return groups[p].first < groups[q].first; });
  std::vector<int64_t> stride(groups.size());  // stride[g] for output group g
  int64_t running = 1;
  for (size_t k = by_input.size(); k-- > 0;) {
    stride[by_input[k]] = running;
    running *= groups[by_input[k]].second;
  }
  const int rank = static_cast<int>(groups.size());
  const int64_t L = groups.back().second, lstride = stride.back(), rows = n / L;
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t row = 0; row < rows; ++row) {
    int64_t off = 0, r = row;
    for (int k = rank - 2; k >= 0; --k) {
      off += (r % groups[static_cast<size_t>(k)].second) * stride[static_cast<size_t>(k)];
      r /= groups[static_cast<size_t>(k)].second;
    }
    float* dst = out + row * L;
    const float* src = in + off;
    if (lstride == 1) {
      copy_run(dst, src, L, accumulate);
    } else if (accumulate) {
      for (int64_t j = 0; j < L; ++j) dst[j] += src[j * lstride];
    } else {
      for (int64_t j = 0; j < L; ++j) dst[j] = src[j * lstride];
    }
  }
}

std::vector<int> checked_permutation(const Shape& s, const std::vector<int>& order, const char* op) {
  const int rank = static_cast<int>(s.size());
  bool ok = static_cast<int>(order.size()) == rank;
  std::vector<int> norm;
  std::vector<char> seen(s.size(), 0);
  for (int a : order) {
    if (!ok) break;
    const int n = a < 0 ? a + rank : a;
    if (n < 0 || n >= rank || seen[static_cast<size_t>(n)]) ok = false;
    else seen[static_cast<size_t>(n)] = 1, norm.push_back(n);
  }
  if (!ok) fail(op, ": ", order_str(order), " is not a permutation of the ", rank, " axes of shape ", s);
  return norm;
}

}  // namespace

Tensor permute(const Tensor& x, std::vector<int> order) {
  const Shape& s = x.shape();
  order = checked_permutation(s, order, "permute");
  Shape out_shape(s.size());
  for (size_t k = 0; k < order.size(); ++k) out_shape[k] = s[static_cast<size_t>(order[k])];
  Tensor out(out_shape);
  permute_kernel(x.data(), s, order, out.data(), false);
  if (!any_requires_grad({&x})) return out;
  std::vector<int> inverse(order.size());
  for (size_t k = 0; k < order.size(); ++k) inverse[static_cast<size_t>(order[k])] = static_cast<int>(k);
  record(out, "permute", {x}, [out_shape, inverse](const float* g, const std::vector<float*>& gin) {
    permute_kernel(g, out_shape, inverse, gin[0], true);
  });
  return out;
}

Tensor transpose(const Tensor& x, int axis_a, int axis_b) {
  const int a = normalize_axis(axis_a, x.shape(), "transpose"), b = normalize_axis(axis_b, x.shape(), "transpose");
  std::vector<int> order(static_cast<size_t>(x.dim()));
  for (int k = 0; k < x.dim(); ++k) order[static_cast<size_t>(k)] = k;
  std::swap(order[static_cast<size_t>(a)], order[static_cast<size_t>(b)]);
  return permute(x, order);
}

Tensor permute_reference(const Tensor& x, const std::vector<int>& order_in) {
  const Shape& s = x.shape();
  const std::vector<int> order = checked_permutation(s, order_in, "permute_reference");
  Shape out_shape(s.size());
  for (size_t k = 0; k < order.size(); ++k) out_shape[k] = s[static_cast<size_t>(order[k])];
  Tensor out(out_shape);
  std::vector<int64_t> idx_out(s.size()), idx_in(s.size());
  for (int64_t o = 0; o < out.numel(); ++o) {
    for (int64_t k = static_cast<int64_t>(s.size()) - 1, r = o; k >= 0; --k) {
      idx_out[static_cast<size_t>(k)] = r % out_shape[static_cast<size_t>(k)];
      r /= out_shape[static_cast<size_t>(k)];
    }
    for (size_t k = 0; k < order.size(); ++k) idx_in[static_cast<size_t>(order[k])] = idx_out[k];
    int64_t flat = 0;
    for (size_t a = 0; a < s.size(); ++a) flat = flat * s[a] + idx_in[a];
    out.data()[o] = x.data()[flat];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// slice: [outer, n, inner] -> [outer, m, inner], row k of the output is row start + k*step of the input.
// ---------------------------------------------------------------------------------------------------------------

Tensor slice(const Tensor& x, int axis, int64_t start, int64_t end, int64_t step) {
  const Shape& s = x.shape();
  const size_t a = static_cast<size_t>(normalize_axis(axis, s, "slice"));
  if (step < 1) fail("slice: step must be >= 1, got ", step, " (axis ", axis, ", shape ", s, ")");
  const int64_t n = s[a];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, 0, n);
  const int64_t m = end > start ? (end - start + step - 1) / step : 0;
  const int64_t outer = product(s, 0, a), inner = product(s, a + 1, s.size());
  Shape out_shape = s;
  out_shape[a] = m;
  Tensor out(out_shape);
  const float* px = x.data();
  float* po = out.data();
#pragma omp parallel for if (outer * m * inner > kParallelGrain)
  for (int64_t row = 0; row < outer * m; ++row) {
    const int64_t o = row / m, k = row % m;
    copy_run(po + row * inner, px + (o * n + start + k * step) * inner, inner, false);
  }
  if (!any_requires_grad({&x})) return out;
  record(out, "slice", {x}, [outer, n, m, inner, start, step](const float* g, const std::vector<float*>& gin) {
    float* gx = gin[0];
#pragma omp parallel for if (outer * m * inner > kParallelGrain)
    for (int64_t row = 0; row < outer * m; ++row) {
      const int64_t o = row / m, k = row % m;
      copy_run(gx + (o * n + start + k * step) * inner, g + row * inner, inner, true);
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// concat / stack: inputs seen as [outer, n_t, inner], laid side by side along the middle axis.
// ---------------------------------------------------------------------------------------------------------------

namespace {

Tensor join(const std::vector<Tensor>& xs, int64_t outer, const std::vector<int64_t>& sizes, int64_t inner,
            Shape out_shape, const char* op) {
  Tensor out(std::move(out_shape));
  std::vector<int64_t> offsets(sizes.size());
  int64_t total = 0;
  for (size_t t = 0; t < sizes.size(); ++t) offsets[t] = total, total += sizes[t];
  float* po = out.data();
#pragma omp parallel for if (out.numel() > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o)
    for (size_t t = 0; t < xs.size(); ++t)
      copy_run(po + (o * total + offsets[t]) * inner, xs[t].data() + o * sizes[t] * inner, sizes[t] * inner, false);
  if (!any_requires_grad(xs)) return out;
  record(out, op, xs, [outer, sizes, offsets, total, inner](const float* g, const std::vector<float*>& gin) {
#pragma omp parallel for if (outer * total * inner > kParallelGrain)
    for (int64_t o = 0; o < outer; ++o)
      for (size_t t = 0; t < sizes.size(); ++t)
        if (gin[t]) copy_run(gin[t] + o * sizes[t] * inner, g + (o * total + offsets[t]) * inner, sizes[t] * inner, true);
  });
  return out;
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int axis) {
  if (xs.empty()) fail("concat: no tensors to concatenate");
  const Shape& s0 = xs[0].shape();
  const size_t a = static_cast<size_t>(normalize_axis(axis, s0, "concat"));
  Shape out_shape = s0;
  out_shape[a] = 0;
  std::vector<int64_t> sizes;
  for (size_t t = 0; t < xs.size(); ++t) {
    const Shape& s = xs[t].shape();
    bool match = s.size() == s0.size();
    for (size_t k = 0; match && k < s.size(); ++k) match = k == a || s[k] == s0[k];
    if (!match)
      fail("concat: tensor ", t, " has shape ", s, " but tensor 0 has shape ", s0, "; all axes except axis ", axis,
           " must match");
    sizes.push_back(s[a]);
    out_shape[a] += s[a];
  }
  return join(xs, product(s0, 0, a), sizes, product(s0, a + 1, s0.size()), out_shape, "concat");
}

Tensor stack(const std::vector<Tensor>& xs, int axis) {
  if (xs.empty()) fail("stack: no tensors to stack");
  const Shape& s0 = xs[0].shape();
  const int rank = static_cast<int>(s0.size());
  if (axis < -(rank + 1) || axis > rank)
    fail("stack: axis ", axis, " out of range for inputs of shape ", s0, " (valid: ", -(rank + 1), " to ", rank, ")");
  const size_t a = static_cast<size_t>(axis < 0 ? axis + rank + 1 : axis);
  for (size_t t = 1; t < xs.size(); ++t)
    if (xs[t].shape() != s0)
      fail("stack: tensor ", t, " has shape ", xs[t].shape(), " but tensor 0 has shape ", s0,
           "; stacked tensors must have equal shapes");
  Shape out_shape = s0;
  out_shape.insert(out_shape.begin() + static_cast<std::ptrdiff_t>(a), static_cast<int64_t>(xs.size()));
  return join(xs, product(s0, 0, a), std::vector<int64_t>(xs.size(), 1), product(s0, a, s0.size()), out_shape,
              "stack");
}

// ---------------------------------------------------------------------------------------------------------------
// pad: [outer, n, inner] -> [outer, before + n + after, inner]; each output row copies the input row that
// pad_source_index names, or is zero. Backward: several output rows may read one input row (Reflect, Replicate,
// Circular), so each outer block is owned by one thread and its rows accumulate serially.
// ---------------------------------------------------------------------------------------------------------------

namespace {

void check_pad(const char* op, const Shape& s, int axis, int64_t before, int64_t after, PadMode mode) {
  const int64_t n = s[static_cast<size_t>(axis)], widest = std::max(before, after);
  if (before < 0 || after < 0) fail(op, ": negative padding (", before, ", ", after, ") on axis ", axis, " of shape ", s);
  if (widest == 0) return;
  if (mode == PadMode::Reflect && widest >= n)
    fail(op, ": reflect padding ", widest, " needs a larger axis: axis ", axis, " of shape ", s, " has size ", n,
         " (reflect requires pad < size)");
  if (mode == PadMode::Circular && widest > n)
    fail(op, ": circular padding ", widest, " exceeds the size ", n, " of axis ", axis, " of shape ", s,
         " (circular requires pad <= size)");
  if (mode == PadMode::Replicate && n == 0)
    fail(op, ": replicate padding of an empty axis ", axis, " (shape ", s, ")");
}

// For each padded coordinate 0..before+n+after-1, the input cell it reads (or -1).
std::vector<int64_t> source_map(int64_t n, int64_t before, int64_t after, PadMode mode) {
  std::vector<int64_t> map(static_cast<size_t>(before + n + after));
  for (size_t j = 0; j < map.size(); ++j) map[j] = pad_source_index(static_cast<int64_t>(j) - before, n, mode);
  return map;
}

}  // namespace

Tensor pad(const Tensor& x, int axis, int64_t before, int64_t after, PadMode mode) {
  const Shape& s = x.shape();
  const size_t a = static_cast<size_t>(normalize_axis(axis, s, "pad"));
  check_pad("pad", s, static_cast<int>(a), before, after, mode);
  const int64_t n = s[a], m = before + n + after;
  const int64_t outer = product(s, 0, a), inner = product(s, a + 1, s.size());
  const std::vector<int64_t> src = source_map(n, before, after, mode);
  Shape out_shape = s;
  out_shape[a] = m;
  Tensor out(out_shape);  // zero-filled: Zeros rows are skipped
  const float* px = x.data();
  float* po = out.data();
#pragma omp parallel for if (outer * m * inner > kParallelGrain)
  for (int64_t row = 0; row < outer * m; ++row) {
    const int64_t o = row / m, j = row % m, k = src[static_cast<size_t>(j)];
    if (k >= 0) copy_run(po + row * inner, px + (o * n + k) * inner, inner, false);
  }
  if (!any_requires_grad({&x})) return out;
  record(out, "pad", {x}, [src, outer, n, m, inner](const float* g, const std::vector<float*>& gin) {
    float* gx = gin[0];
#pragma omp parallel for if (outer * m * inner > kParallelGrain)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < m; ++j) {
        const int64_t k = src[static_cast<size_t>(j)];
        if (k >= 0) copy_run(gx + (o * n + k) * inner, g + (o * m + j) * inner, inner, true);
      }
  });
  return out;
}

// [P, H, W] -> [P, Ho, Wo] in one pass (rather than pad(pad(x))), through a row map and a column map.
Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right, PadMode mode) {
  const Shape& s = x.shape();
  if (s.size() < 2) fail("pad2d: expected a tensor [..., H, W] with at least 2 axes, got shape ", s);
  const int rank = static_cast<int>(s.size());
  check_pad("pad2d", s, rank - 2, top, bottom, mode);
  check_pad("pad2d", s, rank - 1, left, right, mode);
  const int64_t H = s[s.size() - 2], W = s[s.size() - 1], P = product(s, 0, s.size() - 2);
  const int64_t Ho = top + H + bottom, Wo = left + W + right;
  const std::vector<int64_t> rows = source_map(H, top, bottom, mode), cols = source_map(W, left, right, mode);
  Shape out_shape = s;
  out_shape[s.size() - 2] = Ho;
  out_shape[s.size() - 1] = Wo;
  Tensor out(out_shape);
  const float* px = x.data();
  float* po = out.data();
#pragma omp parallel for if (P * Ho * Wo > kParallelGrain)
  for (int64_t r = 0; r < P * Ho; ++r) {
    const int64_t p = r / Ho, sy = rows[static_cast<size_t>(r % Ho)];
    if (sy < 0) continue;
    const float* in_row = px + (p * H + sy) * W;
    float* out_row = po + r * Wo;
    for (int64_t xo = 0; xo < Wo; ++xo) {
      const int64_t sx = cols[static_cast<size_t>(xo)];
      if (sx >= 0) out_row[xo] = in_row[sx];
    }
  }
  if (!any_requires_grad({&x})) return out;
  record(out, "pad2d", {x}, [rows, cols, P, H, W, Ho, Wo](const float* g, const std::vector<float*>& gin) {
    float* gx = gin[0];
#pragma omp parallel for if (P * Ho * Wo > kParallelGrain)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t yo = 0; yo < Ho; ++yo) {
        const int64_t sy = rows[static_cast<size_t>(yo)];
        if (sy < 0) continue;
        float* gin_row = gx + (p * H + sy) * W;
        const float* g_row = g + (p * Ho + yo) * Wo;
        for (int64_t xo = 0; xo < Wo; ++xo) {
          const int64_t sx = cols[static_cast<size_t>(xo)];
          if (sx >= 0) gin_row[sx] += g_row[xo];
        }
      }
  });
  return out;
}

Tensor pad_reference(const Tensor& x, int axis, int64_t before, int64_t after, PadMode mode) {
  const Shape& s = x.shape();
  const size_t a = static_cast<size_t>(normalize_axis(axis, s, "pad_reference"));
  check_pad("pad_reference", s, static_cast<int>(a), before, after, mode);
  Shape out_shape = s;
  out_shape[a] += before + after;
  Tensor out(out_shape);
  std::vector<int64_t> idx(s.size());
  for (int64_t o = 0; o < out.numel(); ++o) {
    for (int64_t k = static_cast<int64_t>(s.size()) - 1, r = o; k >= 0; --k) {
      idx[static_cast<size_t>(k)] = r % out_shape[static_cast<size_t>(k)];
      r /= out_shape[static_cast<size_t>(k)];
    }
    const int64_t src = pad_source_index(idx[a] - before, s[a], mode);
    if (src < 0) continue;
    idx[a] = src;
    int64_t flat = 0;
    for (size_t k = 0; k < s.size(); ++k) flat = flat * s[k] + idx[k];
    out.data()[o] = x.data()[flat];
  }
  return out;
}

}  // namespace eq
