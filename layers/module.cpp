#include "layers/module.h"

namespace eq {

Tensor Module::register_parameter(std::string name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(std::move(name), t);
  return t;
}

Tensor Module::register_buffer(std::string name, Tensor t) {
  buffers_.emplace_back(std::move(name), t);
  return t;
}

void Module::collect(const std::string& prefix, bool parameters, NamedTensors& out) const {
  for (const auto& [n, t] : parameters ? params_ : buffers_) out.emplace_back(prefix + n, t);
  for (const auto& [n, child] : children_) child->collect(prefix + n + ".", parameters, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

void Module::summarise(const std::string& prefix, int depth, std::string& out) const {
  int64_t own = 0;
  for (const auto& [n, t] : params_) own += t.numel();
  out += std::string(2 * depth, ' ') + (prefix.empty() ? "" : prefix + ": ") + name();
  if (own) out += "  (" + std::to_string(own) + " params)";
  out += "\n";
  for (const auto& [n, child] : children_) child->summarise(n, depth + 1, out);
}

std::string Module::summary() const {
  std::string out;
  summarise("", 0, out);
  return out + "total parameters: " + std::to_string(num_parameters()) + "\n";
}

}  // namespace eq
