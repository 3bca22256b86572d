#include "engine/optim.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

// ---------------------------------------------------------------------------------------------------------------
// Optimizer base: parameter list, learning rate, per-parameter state and its export/import.
// ---------------------------------------------------------------------------------------------------------------

Optimizer::Optimizer(std::vector<Tensor> params, float lr, const char* name)
    : Optimizer(std::vector<ParamGroup>{ParamGroup{std::move(params), 1.0f, ""}}, lr, name) {}

Optimizer::Optimizer(std::vector<ParamGroup> groups, float lr, const char* name) : lr_(0), name_(name) {
  if (groups.empty()) fail(name_, ": needs at least one parameter group");
  // A tensor in two groups would be stepped twice per step() (PyTorch refuses this too); storage identifies it.
  std::map<const float*, size_t> owner;
  for (size_t g = 0; g < groups.size(); ++g) {
    const ParamGroup& group = groups[g];
    const std::string label = "group " + std::to_string(g) + (group.name.empty() ? "" : " (" + group.name + ")");
    if (!(group.lr_multiplier >= 0) || !std::isfinite(group.lr_multiplier))
      fail(name_, ": ", label, ": lr multiplier must be finite and >= 0, got ", group.lr_multiplier);
    for (const Tensor& p : group.params) {
      const size_t i = params_.size();
      if (!p.defined()) fail(name_, ": parameter ", i, " (", label, ") is an undefined tensor");
      if (!p.is_leaf())
        fail(name_, ": parameter ", i, " (", label, ") ", p.shape(), " is the output of an op, not a leaf tensor");
      if (p.numel() > 0) {
        auto [it, fresh] = owner.emplace(p.data(), g);
        if (!fresh && it->second != g)
          fail(name_, ": parameter ", i, " ", p.shape(), " is in group ", it->second, " and in ", label);
      }
      params_.push_back(p);
      param_group_.push_back(g);
    }
    group_multipliers_.push_back(group.lr_multiplier);
    group_sizes_.push_back(group.params.size());
  }
  steps_.assign(params_.size(), 0);
  set_lr(lr);
}

float Optimizer::lr_multiplier(size_t group) const {
  if (group >= group_multipliers_.size())
    fail(name_, ": group ", group, " does not exist (", group_multipliers_.size(), " groups)");
  return group_multipliers_[group];
}

void Optimizer::set_lr(float lr) {
  if (!(lr >= 0) || !std::isfinite(lr)) fail(name_, ": learning rate must be finite and >= 0, got ", lr);
  lr_ = lr;
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

void Optimizer::add_slot(const char* slot_name) {
  Slot slot{slot_name, {}};
  for (const Tensor& p : params_) slot.per_param.push_back(Tensor::zeros(p.shape()));
  slots_.push_back(std::move(slot));
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  out.emplace_back("lr", Tensor::scalar(lr_));
  if (group_multipliers_.size() > 1) {
    for (size_t g = 0; g < group_multipliers_.size(); ++g) {
      const std::string prefix = "group." + std::to_string(g) + ".";
      out.emplace_back(prefix + "lr_multiplier", Tensor::scalar(group_multipliers_[g]));
      out.emplace_back(prefix + "params", Tensor::scalar(static_cast<float>(group_sizes_[g])));
    }
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string prefix = "param." + std::to_string(i) + ".";
    out.emplace_back(prefix + "step", Tensor::scalar(static_cast<float>(steps_[i])));
    for (const Slot& slot : slots_) out.emplace_back(prefix + slot.name, slot.per_param[i].clone());
  }
  return out;
}

void Optimizer::load_state(const NamedTensors& state) {
  // The expected layout is exactly what state() produces; compare names and shapes before touching anything, so a
  // bad state leaves the optimizer as it was.
  const NamedTensors expected = this->state();
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state) {
    if (!given.emplace(name, &t).second) fail(name_, ".load_state: key '", name, "' appears twice");
  }
  std::string missing, unexpected, mismatched;
  for (const auto& [name, t] : expected) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing += (missing.empty() ? "" : ", ") + name;
    } else if (!it->second->defined() || it->second->shape() != t.shape()) {
      mismatched += (mismatched.empty() ? "" : ", ") + name + " (expected " + shape_str(t.shape()) + ", got " +
                    (it->second->defined() ? shape_str(it->second->shape()) : std::string("undefined")) + ")";
    }
  }
  std::set<std::string> known;
  for (const auto& [name, t] : expected) known.insert(name);
  for (const auto& [name, t] : state)
    if (!known.count(name)) unexpected += (unexpected.empty() ? "" : ", ") + name;
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty())
    fail(name_, ".load_state: state does not match this optimizer (", params_.size(), " parameters)",
         missing.empty() ? "" : "; missing: ", missing, unexpected.empty() ? "" : "; unexpected: ", unexpected,
         mismatched.empty() ? "" : "; wrong shape: ", mismatched);

  // Group configuration must match exactly (see optim.h): it is compared, never loaded.
  for (const auto& [name, t] : expected) {
    if (name.rfind("group.", 0) != 0) continue;
    const float want = t.item(), got = given[name]->item();
    if (got != want)
      fail(name_, ".load_state: '", name, "' is ", got, " in the state but ", want,
           " in this optimizer (other parameter groups or lr multipliers)");
  }
  std::vector<int64_t> steps(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string key = "param." + std::to_string(i) + ".step";
    const float s = given[key]->item();
    if (!(s >= 0) || s != std::floor(s) || s > 16777216.0f)
      fail(name_, ".load_state: '", key, "' must be a whole number of steps in [0, 2^24], got ", s);
    steps[i] = static_cast<int64_t>(s);
  }
  set_lr(given["lr"]->item());
  steps_ = steps;
  for (size_t i = 0; i < params_.size(); ++i)
    for (Slot& slot : slots_)
      slot.per_param[i].copy_from(*given["param." + std::to_string(i) + "." + slot.name]);
}

// ---------------------------------------------------------------------------------------------------------------
// SGD
// ---------------------------------------------------------------------------------------------------------------

SGD::SGD(std::vector<Tensor> params, float lr, float momentum, bool nesterov, float weight_decay, float dampening)
    : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), 1.0f, ""}}, lr, momentum, nesterov, weight_decay,
          dampening) {}

SGD::SGD(std::vector<ParamGroup> groups, float lr, float momentum, bool nesterov, float weight_decay,
         float dampening)
    : Optimizer(std::move(groups), lr, "SGD"),
      momentum_(momentum),
      weight_decay_(weight_decay),
      dampening_(dampening),
      nesterov_(nesterov) {
  if (!(momentum >= 0)) fail("SGD: momentum must be >= 0, got ", momentum);
  if (!(weight_decay >= 0)) fail("SGD: weight_decay must be >= 0, got ", weight_decay);
  if (!(dampening >= 0 && dampening <= 1)) fail("SGD: dampening must be in [0, 1], got ", dampening);
  if (nesterov && (momentum == 0 || dampening != 0))
    fail("SGD: Nesterov momentum needs momentum > 0 and dampening = 0 (got momentum ", momentum, ", dampening ",
         dampening, ")");
  if (momentum_ != 0) add_slot("momentum_buffer");
}

void SGD::step() {
  NoGrad no_grad;
  const float mu = momentum_, wd = weight_decay_, damp = 1.0f - dampening_;
  const bool nesterov = nesterov_;
  for (size_t k = 0; k < params_.size(); ++k) {
    Tensor& p = params_[k];
    if (!p.has_grad()) continue;
    const float lr = param_lr(k);
    const bool first = steps_[k] == 0;
    float* w = p.data();
    const float* g = p.grad_data();
    float* buf = mu != 0 ? slots_[0].per_param[k].data() : nullptr;
    const int64_t n = p.numel();
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      float d = g[i];
      if (wd != 0) d += wd * w[i];
      if (buf) {
        buf[i] = first ? d : mu * buf[i] + damp * d;
        d = nesterov ? d + mu * buf[i] : buf[i];
      }
      w[i] -= lr * d;
    }
    ++steps_[k];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Adam / AdamW
// ---------------------------------------------------------------------------------------------------------------

Adam::Adam(std::vector<Tensor> params, float lr, float beta1, float beta2, float eps, float weight_decay,
           bool decoupled)
    : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), 1.0f, ""}}, lr, beta1, beta2, eps, weight_decay,
           decoupled) {}

Adam::Adam(std::vector<ParamGroup> groups, float lr, float beta1, float beta2, float eps, float weight_decay,
           bool decoupled)
    : Optimizer(std::move(groups), lr, decoupled ? "AdamW" : "Adam"),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps),
      weight_decay_(weight_decay),
      decoupled_(decoupled) {
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
    fail(name_, ": betas must be in [0, 1), got (", beta1, ", ", beta2, ")");
  if (!(eps >= 0)) fail(name_, ": eps must be >= 0, got ", eps);
  if (!(weight_decay >= 0)) fail(name_, ": weight_decay must be >= 0, got ", weight_decay);
  add_slot("exp_avg");
  add_slot("exp_avg_sq");
}

void Adam::step() {
  NoGrad no_grad;
  const float b1 = beta1_, b2 = beta2_, eps = eps_, wd = weight_decay_;
  const bool decoupled = decoupled_;
  for (size_t k = 0; k < params_.size(); ++k) {
    Tensor& p = params_[k];
    if (!p.has_grad()) continue;
    const int64_t t = ++steps_[k];
    const float lr = param_lr(k);
    // Scalars in double, as PyTorch computes them in Python floats.
    const double bias_correction1 = 1.0 - std::pow(static_cast<double>(b1), static_cast<double>(t));
    const double bias_correction2 = 1.0 - std::pow(static_cast<double>(b2), static_cast<double>(t));
    const float step_size = static_cast<float>(lr / bias_correction1);
    const float bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    const float decay = static_cast<float>(1.0 - static_cast<double>(lr) * wd);
    float* w = p.data();
    const float* g = p.grad_data();
    float* m = slots_[0].per_param[k].data();
    float* v = slots_[1].per_param[k].data();
    const int64_t n = p.numel();
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      float gi = g[i];
      if (wd != 0) {
        if (decoupled) w[i] *= decay;
        else gi += wd * w[i];
      }
      m[i] = m[i] + (1.0f - b1) * (gi - m[i]);  // torch's lerp_(grad, 1 - beta1)
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      w[i] -= step_size * (m[i] / denom);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// RMSprop and gradient-norm clipping
// ---------------------------------------------------------------------------------------------------------------

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  check(max_norm >= 0, "clip_grad_norm: max_norm must be >= 0, got ", max_norm);
  double sum_sq = 0;
  for (Tensor p : params) {  // handles: copies share the gradient storage
    if (!p.has_grad()) continue;
    const float* g = p.grad_data();
    for (int64_t i = 0; i < p.numel(); ++i) sum_sq += static_cast<double>(g[i]) * g[i];
  }
  const double norm = std::sqrt(sum_sq);
  // torch: clip_coef = max_norm / (norm + 1e-6), applied when < 1.
  const double coef = max_norm / (norm + 1e-6);
  if (max_norm > 0 && coef < 1) {
    for (Tensor p : params) {
      if (!p.has_grad()) continue;
      float* g = p.grad_data();
      for (int64_t i = 0; i < p.numel(); ++i) g[i] = static_cast<float>(g[i] * coef);
    }
  }
  return norm;
}

RMSprop::RMSprop(std::vector<Tensor> params, float lr, float alpha, float eps)
    : Optimizer(std::move(params), lr, "RMSprop"), alpha_(alpha), eps_(eps) {
  check(alpha >= 0 && alpha < 1, "RMSprop: alpha must be in [0, 1), got ", alpha);
  check(eps >= 0, "RMSprop: eps must be >= 0, got ", eps);
  add_slot("square_avg");
}

void RMSprop::step() {
  NoGrad no_grad;
  for (size_t k = 0; k < params_.size(); ++k) {
    Tensor& p = params_[k];
    if (!p.has_grad()) continue;
    ++steps_[k];
    float* w = p.data();
    const float* g = p.grad_data();
    float* v = slots_[0].per_param[k].data();
    const int64_t n = p.numel();
    const float a = alpha_, eps = eps_, lr = param_lr(k);
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      v[i] = a * v[i] + (1.0f - a) * g[i] * g[i];
      w[i] -= lr * g[i] / (std::sqrt(v[i]) + eps);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Learning-rate schedules
// ---------------------------------------------------------------------------------------------------------------

StepLR::StepLR(float base_lr, std::vector<int> milestones, float gamma)
    : base_lr_(base_lr), gamma_(gamma), milestones_(std::move(milestones)) {
  if (!std::is_sorted(milestones_.begin(), milestones_.end()))
    fail("StepLR: milestones must be in increasing order");
  if (!(gamma > 0)) fail("StepLR: gamma must be > 0, got ", gamma);
}

float StepLR::lr(int epoch) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
  return static_cast<float>(base_lr_ * std::pow(static_cast<double>(gamma_), static_cast<double>(passed)));
}

CosineLR::CosineLR(float base_lr, int total_epochs, float min_lr, int warmup_epochs)
    : base_lr_(base_lr), min_lr_(min_lr), total_(total_epochs), warmup_(warmup_epochs) {
  if (warmup_epochs < 0 || total_epochs <= warmup_epochs)
    fail("CosineLR: need 0 <= warmup_epochs < total_epochs, got warmup ", warmup_epochs, ", total ", total_epochs);
}

float CosineLR::lr(int epoch) const {
  if (epoch < warmup_) return base_lr_ * static_cast<float>(epoch + 1) / static_cast<float>(warmup_);
  if (epoch >= total_) return min_lr_;
  const double t = epoch - warmup_, T = total_ - warmup_;
  return static_cast<float>(min_lr_ + (base_lr_ - min_lr_) * (1.0 + std::cos(M_PI * t / T)) / 2.0);
}

}  // namespace eq
