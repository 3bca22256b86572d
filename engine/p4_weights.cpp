// equilab — p4 filter-bank expansion: one gather kernel for lifting (G = 1 input rotations) and group (G = 4)
// banks, and the compositional references.
#include "engine/p4_weights.h"

#include <array>
#include <memory>

#include "engine/autograd.h"
#include "engine/resample.h"
#include "engine/shape_ops.h"

namespace eq {

namespace {

// For a k x k plane: rotation r's output cell q reads input cell table[r][q], matching eq::rot90:
//   r = 1: out[i, j] = x[j, k-1-i];  r = 2: x[k-1-i, k-1-j];  r = 3: x[k-1-j, i].
using RotationTable = std::array<std::vector<int64_t>, 4>;

RotationTable rotation_table(int64_t k) {
  RotationTable t;
  for (auto& v : t) v.resize(static_cast<size_t>(k * k));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      t[0][i * k + j] = i * k + j;
      t[1][i * k + j] = j * k + (k - 1 - i);
      t[2][i * k + j] = (k - 1 - i) * k + (k - 1 - j);
      t[3][i * k + j] = (k - 1 - j) * k + i;
    }
  return t;
}

struct BankGeometry {
  int64_t Cout, Cin, G, k;  // base w [Cout, Cin, G, k, k] (G = 1 for lifting: the axis is absent)
  int64_t kk() const { return k * k; }
  // Base block feeding bank block (co*4 + r, ci*G + s).
  int64_t source_block(int64_t co, int64_t r, int64_t ci, int64_t s) const {
    const int64_t shifted = G == 1 ? 0 : (s - r + 4) % 4;
    return (co * Cin + ci) * G + shifted;
  }
  int64_t bank_block(int64_t co, int64_t r, int64_t ci, int64_t s) const {
    return (co * 4 + r) * (Cin * G) + ci * G + s;
  }
};

// Walks every bank entry: visit(bank_index, base_index). Parallel over co: bank rows co*4 .. co*4+3 read only
// base rows co, so the backward's accumulation into w[co] is owned by one thread.
template <class Visit>
void for_each_bank_entry(const BankGeometry& g, Visit visit) {
  const RotationTable rot = rotation_table(g.k);
  const int64_t kk = g.kk();
#pragma omp parallel for if (g.Cout > 1 && g.Cout * g.Cin * g.G * kk * 4 > (1 << 14))
  for (int64_t co = 0; co < g.Cout; ++co)
    for (int64_t r = 0; r < 4; ++r)
      for (int64_t ci = 0; ci < g.Cin; ++ci)
        for (int64_t s = 0; s < g.G; ++s) {
          const int64_t dst = g.bank_block(co, r, ci, s) * kk, src = g.source_block(co, r, ci, s) * kk;
          const int64_t* t = rot[r].data();
          for (int64_t q = 0; q < kk; ++q) visit(dst + q, src + t[q]);
        }
}

Tensor expand_bank(const Tensor& w, const BankGeometry& g, Shape bank_shape, const char* op) {
  Tensor bank(std::move(bank_shape));
  const float* pw = w.data();
  float* pb = bank.data();
  for_each_bank_entry(g, [&](int64_t dst, int64_t src) { pb[dst] = pw[src]; });
  if (!any_requires_grad({&w})) return bank;
  record(bank, op, {w}, [g](const float* grad, const std::vector<float*>& gin) {
    float* gw = gin[0];
    for_each_bank_entry(g, [&](int64_t dst, int64_t src) { gw[src] += grad[dst]; });
  });
  return bank;
}

}  // namespace

Tensor p4_lift_weights(const Tensor& w) {
  check(w.dim() == 4 && w.size(2) == w.size(3), "p4_lift_weights: expected square filters w [Cout, Cin, k, k], got ",
        w.shape());
  const BankGeometry g{w.size(0), w.size(1), 1, w.size(2)};
  return expand_bank(w, g, {g.Cout * 4, g.Cin, g.k, g.k}, "p4_lift_weights");
}

Tensor p4_group_weights(const Tensor& w) {
  check(w.dim() == 5 && w.size(2) == 4 && w.size(3) == w.size(4),
        "p4_group_weights: expected square filters with an input-rotation axis of 4, w [Cout, Cin, 4, k, k], got ",
        w.shape());
  const BankGeometry g{w.size(0), w.size(1), 4, w.size(3)};
  return expand_bank(w, g, {g.Cout * 4, g.Cin * 4, g.k, g.k}, "p4_group_weights");
}

Tensor p4_expand_bias(const Tensor& b) {
  check(b.dim() == 1, "p4_expand_bias: expected b [Cout], got ", b.shape());
  const int64_t C = b.size(0);
  Tensor out({C * 4});
  for (int64_t i = 0; i < C * 4; ++i) out.data()[i] = b.data()[i / 4];
  if (!any_requires_grad({&b})) return out;
  record(out, "p4_expand_bias", {b}, [C](const float* g, const std::vector<float*>& gin) {
    for (int64_t c = 0; c < C; ++c) gin[0][c] += g[c * 4] + g[c * 4 + 1] + g[c * 4 + 2] + g[c * 4 + 3];
  });
  return out;
}

Tensor p4_lift_weights_reference(const Tensor& w) {
  std::vector<Tensor> rotated;
  for (int r = 0; r < 4; ++r) rotated.push_back(rot90(w, r));
  Tensor s = stack(rotated, 1);  // [Cout, 4, Cin, k, k]
  return reshape(s, {w.size(0) * 4, w.size(1), w.size(2), w.size(3)});
}

Tensor p4_group_weights_reference(const Tensor& w) {
  const int64_t Cout = w.size(0), Cin = w.size(1), k = w.size(3);
  std::vector<Tensor> banks;
  for (int r = 0; r < 4; ++r) {
    // shifted[:, :, s] = w[:, :, (s - r) mod 4]: a roll of the rotation axis by r.
    Tensor shifted = r == 0 ? w : concat({slice(w, 2, 4 - r, 4), slice(w, 2, 0, 4 - r)}, 2);
    banks.push_back(reshape(rot90(shifted, r), {Cout, Cin * 4, k, k}));
  }
  return reshape(stack(banks, 1), {Cout * 4, Cin * 4, k, k});  // [Cout, 4, Cin*4, k, k] -> bank
}

}  // namespace eq
