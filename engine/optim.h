// equilab — optimizers (SGD with momentum/Nesterov, Adam, AdamW) and learning-rate schedules.
//
// An optimizer holds handles to the parameters it updates; step() reads each parameter's .grad and writes the
// new values into the parameter's storage, so the model sees them at once. Parameters without a gradient (not
// used in this forward pass, or frozen) are skipped, and their state does not advance. The update rules follow
// PyTorch's torch.optim exactly (same order of operations, bias corrections in double), so a PyTorch recipe
// transfers as is.
//
// Parameter groups. The parameters may come in groups, each with a learning-rate multiplier: group g trains at
// lr() * lr_multiplier(g). set_lr(base) sets the base rate, so a schedule scales every group by the same factor and
// the groups keep their ratios (PyTorch's schedulers do the same to each group's initial lr). The usual use: a
// deformable conv's offset branch at 0.1x the rate of the rest of the net. A plain parameter list is one group with
// multiplier 1, and its updates are bit-identical to an optimizer without groups (lr * 1.0f == lr).
//
// state()/load_state() export and import everything the next step depends on (learning rate, per-parameter step
// counts, momentum buffers, Adam moments) as named tensors, which a checkpoint stores next to the model: a run
// resumed from a checkpoint takes exactly the steps it would have taken without the interruption. Keys are
//     "lr", "param.<i>.step", "param.<i>.momentum_buffer" (SGD with momentum), "param.<i>.exp_avg",
//     "param.<i>.exp_avg_sq" (Adam), with <i> the parameter's position in the list given to the constructor
//     (with groups: in the groups' concatenation, group 0 first);
//     with more than one group also "group.<g>.lr_multiplier" and "group.<g>.params" (the group's size). These
//     are configuration, not state: load_state() checks that they equal this optimizer's and fails otherwise (a
//     resume with other multipliers or another grouping is an error, never a silent change of rates). A
//     single-group state has exactly the keys it had before groups existed, so older checkpoints still load.
// Step counts are float32 scalars, as in PyTorch's state_dict: exact up to 2^24 steps.
#pragma once
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/tensor.h"

namespace eq {

// Parameters that train at lr_multiplier times the optimizer's base learning rate. `name` is for messages only.
struct ParamGroup {
  std::vector<Tensor> params;
  float lr_multiplier = 1;
  std::string name;
};

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, float lr, const char* name);  // one group, multiplier 1
  Optimizer(std::vector<ParamGroup> groups, float lr, const char* name);
  virtual ~Optimizer() = default;

  virtual void step() = 0;  // one update of every parameter that has a gradient
  void zero_grad();         // drops the parameters' gradients (PyTorch's set_to_none)
  void set_lr(float lr);  // the base rate; group g then trains at lr * lr_multiplier(g)
  float lr() const { return lr_; }
  const std::vector<Tensor>& params() const { return params_; }  // every group's, concatenated in group order
  size_t num_groups() const { return group_multipliers_.size(); }
  float lr_multiplier(size_t group) const;
  float group_lr(size_t group) const { return lr_ * lr_multiplier(group); }  // the rate group `group` steps with

  // Snapshot (copies) of the optimizer state; load_state() checks that every expected key is present with the
  // right shape and that there are no others, then copies the values in.
  NamedTensors state() const;
  void load_state(const NamedTensors& state);

 protected:
  // Per-parameter state tensors, shaped like the parameter, in a fixed order with fixed names.
  struct Slot {
    const char* name;                 // "momentum_buffer", "exp_avg", ...
    std::vector<Tensor> per_param;    // one per parameter
  };
  void add_slot(const char* slot_name);
  std::vector<Slot> slots_;
  std::vector<int64_t> steps_;  // updates each parameter received so far
  std::vector<Tensor> params_;
  float lr_;
  const char* name_;  // "SGD", "Adam": for error messages
  // The learning rate parameter k steps with (lr_ * its group's multiplier).
  float param_lr(size_t k) const { return lr_ * group_multipliers_[param_group_[k]]; }

 private:
  std::vector<float> group_multipliers_;   // per group
  std::vector<size_t> group_sizes_;        // parameters per group
  std::vector<size_t> param_group_;        // per parameter: its group
};

// SGD as torch.optim.SGD: g = grad + weight_decay * p; with momentum, buf = g on a parameter's first step and
// buf = momentum * buf + (1 - dampening) * g afterwards, then g = buf (or g + momentum * buf with Nesterov);
// p -= lr * g. Nesterov needs momentum > 0 and dampening = 0. lr is the parameter's group rate (group_lr()).
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, float lr, float momentum = 0, bool nesterov = false, float weight_decay = 0,
      float dampening = 0);
  SGD(std::vector<ParamGroup> groups, float lr, float momentum = 0, bool nesterov = false, float weight_decay = 0,
      float dampening = 0);
  void step() override;

 private:
  float momentum_, weight_decay_, dampening_;
  bool nesterov_;
};

// Adam as torch.optim.Adam (decoupled = false: weight decay added to the gradient, L2 regularisation) or
// torch.optim.AdamW (decoupled = true: p *= 1 - lr * weight_decay before the Adam step). With t the parameter's
// step count: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). lr is the parameter's group rate, in the decay too.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f,
       float weight_decay = 0, bool decoupled = false);
  Adam(std::vector<ParamGroup> groups, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f,
       float eps = 1e-8f, float weight_decay = 0, bool decoupled = false);
  void step() override;

 private:
  float beta1_, beta2_, eps_, weight_decay_;
  bool decoupled_;
};

// AdamW = Adam with decoupled weight decay; PyTorch's default weight decay 0.01.
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f,
        float weight_decay = 1e-2f)
      : Adam(std::move(params), lr, beta1, beta2, eps, weight_decay, true) {}
  AdamW(std::vector<ParamGroup> groups, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f,
        float eps = 1e-8f, float weight_decay = 1e-2f)
      : Adam(std::move(groups), lr, beta1, beta2, eps, weight_decay, true) {}
};

// Scales all gradients by max_norm / norm when their global L2 norm exceeds max_norm (torch's clip_grad_norm_);
// returns the norm before clipping. Parameters without a gradient are skipped.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// RMSprop as torch.optim.RMSprop without momentum or centering: v = alpha v + (1 - alpha) g^2,
// p -= lr g / (sqrt(v) + eps). State key "param.<i>.square_avg".
class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Tensor> params, float lr = 1e-2f, float alpha = 0.99f, float eps = 1e-8f);
  void step() override;

 private:
  float alpha_, eps_;
};

// Learning-rate schedules: lr(epoch) for epoch = 0, 1, 2, ...; call optimizer.set_lr(schedule.lr(epoch)) at the
// start of each epoch. They hold no state, so a resumed run just asks for its epoch.
class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  virtual float lr(int epoch) const = 0;
};

// base_lr * gamma^(number of milestones <= epoch): PyTorch's MultiStepLR (e.g. milestones {20, 40}, gamma 0.1).
class StepLR : public LRSchedule {
 public:
  StepLR(float base_lr, std::vector<int> milestones, float gamma = 0.1f);
  float lr(int epoch) const override;

 private:
  float base_lr_, gamma_;
  std::vector<int> milestones_;
};

// Linear warm-up for `warmup_epochs` epochs (base_lr * (epoch + 1) / warmup_epochs), then cosine annealing from
// base_lr to min_lr over the remaining epochs up to total_epochs:
//     min_lr + (base_lr - min_lr) (1 + cos(pi t / T)) / 2,  t = epoch - warmup_epochs,  T = total - warmup;
// min_lr from total_epochs on. With warmup_epochs = 0 this is PyTorch's CosineAnnealingLR(T_max = total_epochs).
class CosineLR : public LRSchedule {
 public:
  CosineLR(float base_lr, int total_epochs, float min_lr = 0, int warmup_epochs = 0);
  float lr(int epoch) const override;

 private:
  float base_lr_, min_lr_;
  int total_, warmup_;
};

}  // namespace eq
