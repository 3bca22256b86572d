#include "tests/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "engine/autograd.h"
#include "engine/rng.h"

namespace eq::testing {

static double weighted_sum(const Tensor& out, const Tensor& w) {
  double s = 0;
  for (int64_t i = 0; i < out.numel(); ++i) s += static_cast<double>(out.data()[i]) * w.data()[i];
  return s;
}

GradCheckResult gradcheck(const TensorFn& f, std::vector<Tensor> inputs, GradCheckOptions opt) {
  GradCheckResult result;
  Rng rng(opt.seed);
  for (auto& x : inputs)
    if (x.defined() && x.requires_grad()) x.zero_grad();

  Tensor out = f(inputs);
  if (!out.requires_grad()) {
    result.ok = false;
    result.report = "output does not require grad: the op recorded no backward";
    return result;
  }
  Tensor w = Tensor::randn(out.shape(), rng);
  out.backward(w);

  std::ostringstream report;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    if (!x.has_grad()) {
      result.ok = false;
      report << "input " << k << " " << shape_str(x.shape()) << ": no gradient was written\n";
      continue;
    }
    const float* analytic = x.grad().data();
    std::vector<int64_t> idx(static_cast<size_t>(x.numel()));
    std::iota(idx.begin(), idx.end(), 0);
    if (static_cast<int64_t>(idx.size()) > opt.max_elements) {
      for (size_t i = 0; i < static_cast<size_t>(opt.max_elements); ++i)
        std::swap(idx[i], idx[i + static_cast<size_t>(rng.randint(static_cast<int64_t>(idx.size() - i)))]);
      idx.resize(static_cast<size_t>(opt.max_elements));
    }
    double diff2 = 0, a2 = 0, n2 = 0, worst = 0;
    int64_t worst_i = -1;
    float* px = x.data();
    for (int64_t i : idx) {
      const float orig = px[i];
      const double h = opt.step * std::max(1.0, std::fabs(static_cast<double>(orig)));
      double lp, lm;
      {
        NoGrad ng;
        px[i] = static_cast<float>(orig + h);
        lp = weighted_sum(f(inputs), w);
        px[i] = static_cast<float>(orig - h);
        lm = weighted_sum(f(inputs), w);
        px[i] = orig;
      }
      // The actual perturbation is what float rounding left of h.
      const double h_eff = (static_cast<double>(static_cast<float>(orig + h)) -
                            static_cast<double>(static_cast<float>(orig - h))) / 2;
      const double numeric = (lp - lm) / (2 * h_eff);
      const double d = analytic[i] - numeric;
      diff2 += d * d;
      a2 += static_cast<double>(analytic[i]) * analytic[i];
      n2 += numeric * numeric;
      if (std::fabs(d) > worst) worst = std::fabs(d), worst_i = i;
    }
    const double denom = std::sqrt(a2) + std::sqrt(n2);
    const double rel = denom > 0 ? std::sqrt(diff2) / denom : 0.0;
    const bool ok = rel <= opt.tolerance && std::isfinite(rel);
    result.ok = result.ok && ok;
    report << "input " << k << " " << shape_str(x.shape()) << ": rel error " << rel << " (checked " << idx.size()
           << " of " << x.numel() << "; worst abs diff " << worst << " at " << worst_i << ")"
           << (ok ? "" : "  <-- FAILED") << "\n";
  }
  result.report = report.str();
  return result;
}

}  // namespace eq::testing
