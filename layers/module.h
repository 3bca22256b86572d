// equilab — Module: the unit a model is built from.
//
// A Module owns named parameters (trained), named buffers (state saved in checkpoints but not trained, such as
// batch-norm running statistics) and named child modules. Names compose with dots, as in PyTorch, so a checkpoint
// key reads "features.0.weight". Tensors are handles: a layer keeps its own copy of each parameter handle, and the
// optimizer and checkpoint loader write through the same storage.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/checkpoint.h"  // NamedTensors
#include "engine/tensor.h"

namespace eq {

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  virtual std::string name() const = 0;  // "Conv2d(1, 32, k=3)": for summaries and errors

  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;

  void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();

  // One line per module, indented by depth, with parameter counts.
  std::string summary() const;

 protected:
  Tensor register_parameter(std::string name, Tensor t);  // marks requires_grad
  Tensor register_buffer(std::string name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> m) {
    children_.emplace_back(std::move(name), m);
    return m;
  }

 private:
  void collect(const std::string& prefix, bool parameters, NamedTensors& out) const;
  void summarise(const std::string& prefix, int depth, std::string& out) const;
  NamedTensors params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace eq
