#include "engine/elementwise.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {


// ---------------------------------------------------------------------------------------------------------------
// Broadcasting machinery
// ---------------------------------------------------------------------------------------------------------------

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) fail(op, ": shapes ", a, " and ", b, " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

// Strides of `in` seen through the broadcast output shape: 0 on stretched axes. Rank = out rank.
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (size_t k = 0; k < in.size(); ++k) {
    const size_t i_in = in.size() - 1 - k, i_out = out.size() - 1 - k;
    strides[i_out] = in[i_in] == 1 ? 0 : stride;
    stride *= in[i_in];
  }
  return strides;
}

// Offset of output row `row` (all axes but the last) in an input with the given broadcast strides.
inline int64_t row_offset(int64_t row, const Shape& out, const std::vector<int64_t>& strides) {
  int64_t off = 0;
  for (int axis = static_cast<int>(out.size()) - 2; axis >= 0; --axis) {
    off += (row % out[axis]) * strides[axis];
    row /= out[axis];
  }
  return off;
}

// Calls body(out_index, a_index, b_index) for every output element. Parallel over output rows, which is safe
// for a forward pass (each output element is written once).
template <class Body>
void for_each_broadcast(const Shape& a, const Shape& b, const Shape& out, Body body) {
  const int64_t n = shape_numel(out);
  if (a == out && b == out) {
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) body(i, i, i);
    return;
  }
  const auto sa = broadcast_strides(a, out), sb = broadcast_strides(b, out);
  const int64_t inner = out.empty() ? 1 : out.back();
  const int64_t rows = inner == 0 ? 0 : n / inner;
  const int64_t la = out.empty() ? 0 : sa.back(), lb = out.empty() ? 0 : sb.back();
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t oa = row_offset(r, out, sa), ob = row_offset(r, out, sb);
    for (int64_t j = 0; j < inner; ++j) body(r * inner + j, oa + j * la, ob + j * lb);
  }
}

// Accumulates contrib(out_index, a_index, b_index) into grad[a_index] (the a side; call with swapped roles for
// b). Parallel only when `mine` has the output shape: otherwise several output elements hit one gradient
// element, and we run serially rather than use atomics.
template <class Contrib>
void accumulate_broadcast_grad(const Shape& mine, const Shape& other, const Shape& out, float* grad, Contrib contrib,
                               bool mine_is_a) {
  const int64_t n = shape_numel(out);
  if (mine == out && other == out) {
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) grad[i] += contrib(i, i, i);
    return;
  }
  const auto sm = broadcast_strides(mine, out), so = broadcast_strides(other, out);
  const int64_t inner = out.empty() ? 1 : out.back();
  const int64_t rows = inner == 0 ? 0 : n / inner;
  const int64_t lm = out.empty() ? 0 : sm.back(), lo = out.empty() ? 0 : so.back();
  auto row = [&](int64_t r) {
    const int64_t om = row_offset(r, out, sm), oo = row_offset(r, out, so);
    for (int64_t j = 0; j < inner; ++j) {
      const int64_t im = om + j * lm, io = oo + j * lo;
      grad[im] += mine_is_a ? contrib(r * inner + j, im, io) : contrib(r * inner + j, io, im);
    }
  };
  if (mine == out) {
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) row(r);
  } else {
    for (int64_t r = 0; r < rows; ++r) row(r);
  }
}

}  // namespace

void sum_to_shape_accumulate(const float* grad, const Shape& from, const Shape& to, float* out) {
  broadcast_shapes(to, from, "sum_to_shape");
  accumulate_broadcast_grad(to, from, from, out, [grad](int64_t i, int64_t, int64_t) { return grad[i]; }, true);
}

// ---------------------------------------------------------------------------------------------------------------
// Binary arithmetic. Forward: out[i] = f(a[ia], b[ib]). Backward: each input's grad += its partial derivative
// times grad_out, summed over broadcast axes.
// ---------------------------------------------------------------------------------------------------------------

namespace {

enum class BinaryOp { Add, Sub, Mul, Div };

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    default: return "div";
  }
}

Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op) {
  const char* name = binary_name(op);
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out(out_shape);
  const float *pa = a.data(), *pb = b.data();
  float* po = out.data();
  switch (op) {
    case BinaryOp::Add: for_each_broadcast(a.shape(), b.shape(), out_shape, [&](int64_t o, int64_t i, int64_t j) { po[o] = pa[i] + pb[j]; }); break;
    case BinaryOp::Sub: for_each_broadcast(a.shape(), b.shape(), out_shape, [&](int64_t o, int64_t i, int64_t j) { po[o] = pa[i] - pb[j]; }); break;
    case BinaryOp::Mul: for_each_broadcast(a.shape(), b.shape(), out_shape, [&](int64_t o, int64_t i, int64_t j) { po[o] = pa[i] * pb[j]; }); break;
    case BinaryOp::Div: for_each_broadcast(a.shape(), b.shape(), out_shape, [&](int64_t o, int64_t i, int64_t j) { po[o] = pa[i] / pb[j]; }); break;
  }
  if (!any_requires_grad({&a, &b})) return out;

  // add/sub need no input values; mul and div need the other operand (div also its own numerator).
  const bool keep = op == BinaryOp::Mul || op == BinaryOp::Div;
  Storage sa = keep ? a.impl()->data : nullptr, sb = keep ? b.impl()->data : nullptr;
  record(out, name, {a, b},
         [op, sa, sb, as = a.shape(), bs = b.shape(), out_shape](const float* g, const std::vector<float*>& gin) {
           const float* va = sa ? sa->data() : nullptr;
           const float* vb = sb ? sb->data() : nullptr;
           if (float* ga = gin[0]) {
             switch (op) {
               case BinaryOp::Add:
               case BinaryOp::Sub: sum_to_shape_accumulate(g, out_shape, as, ga); break;
               case BinaryOp::Mul: accumulate_broadcast_grad(as, bs, out_shape, ga, [&](int64_t o, int64_t, int64_t j) { return g[o] * vb[j]; }, true); break;
               case BinaryOp::Div: accumulate_broadcast_grad(as, bs, out_shape, ga, [&](int64_t o, int64_t, int64_t j) { return g[o] / vb[j]; }, true); break;
             }
           }
           if (float* gb = gin[1]) {
             switch (op) {
               case BinaryOp::Add: sum_to_shape_accumulate(g, out_shape, bs, gb); break;
               case BinaryOp::Sub: accumulate_broadcast_grad(bs, as, out_shape, gb, [&](int64_t o, int64_t, int64_t) { return -g[o]; }, false); break;
               case BinaryOp::Mul: accumulate_broadcast_grad(bs, as, out_shape, gb, [&](int64_t o, int64_t i, int64_t) { return g[o] * va[i]; }, false); break;
               case BinaryOp::Div: accumulate_broadcast_grad(bs, as, out_shape, gb, [&](int64_t o, int64_t i, int64_t j) { return -g[o] * va[i] / (vb[j] * vb[j]); }, false); break;
             }
           }
         });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Add); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Sub); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Mul); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Div); }

// ---------------------------------------------------------------------------------------------------------------
// Unary functions. Forward y = f(x); backward grad_x += grad_y * f'(x), with f' written in terms of x or y,
// whichever is cheaper; the closure keeps only the one it uses.
// ---------------------------------------------------------------------------------------------------------------

namespace {

enum class Keep { X, Y, Nothing };

// f: float -> float. df(x, y) -> dy/dx; it receives 0 for whichever of x, y was not kept. `keep` is a template
// parameter so that each backward loop is branch-free and vectorises.
template <Keep keep, class F, class DF>
Tensor unary(const Tensor& x, const char* op, F f, DF df) {
  Tensor y(x.shape());
  const float* px = x.data();
  float* py = y.data();
  const int64_t n = x.numel();
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) py[i] = f(px[i]);
  if (!any_requires_grad({&x})) return y;
  Storage kept = keep == Keep::X ? x.impl()->data : keep == Keep::Y ? y.impl()->data : nullptr;
  record(y, op, {x}, [kept, n, df](const float* g, const std::vector<float*>& gin) {
    float* __restrict gx = gin[0];
    const float* __restrict v = kept ? kept->data() : nullptr;
    const float* __restrict gy = g;
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (keep == Keep::X) gx[i] += gy[i] * df(v[i], 0.0f);
      else if constexpr (keep == Keep::Y) gx[i] += gy[i] * df(0.0f, v[i]);
      else gx[i] += gy[i] * df(0.0f, 0.0f);
    }
  });
  return y;
}

}  // namespace

Tensor add(const Tensor& a, float s) {
  return unary<Keep::Nothing>(a, "add_scalar", [s](float x) { return x + s; }, [](float, float) { return 1.0f; });
}
Tensor mul(const Tensor& a, float s) {
  return unary<Keep::Nothing>(a, "mul_scalar", [s](float x) { return x * s; }, [s](float, float) { return s; });
}
Tensor neg(const Tensor& a) { return mul(a, -1.0f); }

Tensor relu(const Tensor& x) {
  return unary<Keep::Y>(x, "relu", [](float v) { return v > 0 ? v : 0.0f; },
               [](float, float y) { return y > 0 ? 1.0f : 0.0f; });
}

Tensor leaky_relu(const Tensor& x, float slope) {
  return unary<Keep::X>(x, "leaky_relu", [slope](float v) { return v > 0 ? v : slope * v; },
               [slope](float v, float) { return v > 0 ? 1.0f : slope; });
}

Tensor gelu(const Tensor& x) {
  // gelu(x) = x * Phi(x); d/dx = Phi(x) + x * phi(x), Phi the normal CDF and phi its density.
  return unary<Keep::X>(x, "gelu", [](float v) { return 0.5f * v * (1.0f + std::erf(v * static_cast<float>(M_SQRT1_2))); },
               [](float v, float) {
                 const float cdf = 0.5f * (1.0f + std::erf(v * static_cast<float>(M_SQRT1_2)));
                 const float pdf = std::exp(-0.5f * v * v) * static_cast<float>(0.5 * M_2_SQRTPI * M_SQRT1_2);
                 return cdf + v * pdf;
               });
}

Tensor tanh(const Tensor& x) {
  return unary<Keep::Y>(x, "tanh", [](float v) { return std::tanh(v); }, [](float, float y) { return 1.0f - y * y; });
}

Tensor sigmoid(const Tensor& x) {
  // Split by sign so that exp never overflows.
  return unary<Keep::Y>(x, "sigmoid",
               [](float v) { return v >= 0 ? 1.0f / (1.0f + std::exp(-v)) : std::exp(v) / (1.0f + std::exp(v)); },
               [](float, float y) { return y * (1.0f - y); });
}

Tensor exp(const Tensor& x) {
  return unary<Keep::Y>(x, "exp", [](float v) { return std::exp(v); }, [](float, float y) { return y; });
}

Tensor log(const Tensor& x) {
  return unary<Keep::X>(x, "log", [](float v) { return std::log(v); }, [](float v, float) { return 1.0f / v; });
}

Tensor sqrt(const Tensor& x) {
  return unary<Keep::Y>(x, "sqrt", [](float v) { return std::sqrt(v); }, [](float, float y) { return 0.5f / y; });
}

Tensor pow(const Tensor& x, float p) {
  return unary<Keep::X>(x, "pow", [p](float v) { return std::pow(v, p); },
               [p](float v, float) { return p * std::pow(v, p - 1.0f); });
}

Tensor abs(const Tensor& x) {
  return unary<Keep::X>(x, "abs", [](float v) { return std::fabs(v); },
               [](float v, float) { return v > 0 ? 1.0f : (v < 0 ? -1.0f : 0.0f); });
}

Tensor square(const Tensor& x) {
  return unary<Keep::X>(x, "square", [](float v) { return v * v; }, [](float v, float) { return 2.0f * v; });
}

}  // namespace eq
