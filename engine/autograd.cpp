#include "engine/autograd.h"

#include <algorithm>
#include <unordered_set>
#include <utility>

#include "engine/parallel.h"

namespace eq {

static thread_local bool g_grad_enabled = true;

bool grad_enabled() { return g_grad_enabled; }
NoGrad::NoGrad() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGrad::~NoGrad() { g_grad_enabled = previous_; }

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* op, std::vector<Tensor> inputs, BackwardFn backward) {
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<Node>();
  node->op = op;
  for (auto& t : inputs) node->inputs.push_back(t.defined() ? t.impl() : nullptr);
  node->backward = std::move(backward);
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = std::move(node);
}

void record_view(Tensor& out, const char* op, const Tensor& x) {
  if (!any_requires_grad({&x})) return;
  const int64_t n = x.numel();
  record(out, op, {x}, [n](const float* g, const std::vector<float*>& gin) {
    float* gx = gin[0];
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) gx[i] += g[i];
  });
  out.impl()->grad_fn->gradient_is_input_gradient = true;
}

// Depth-first post-order of the tensors that have a grad_fn, found without recursion (graphs of deep nets or
// long loops would overflow the call stack). Reversed, it runs every node after all of its consumers.
// The order holds owning pointers: freeing a node may drop the last other reference to an intermediate that is
// still waiting for its turn.
using ImplPtr = std::shared_ptr<TensorImpl>;
static std::vector<ImplPtr> topological_order(const ImplPtr& root) {
  std::vector<ImplPtr> order;
  std::unordered_set<TensorImpl*> visited;
  std::vector<std::pair<ImplPtr, size_t>> stack{{root, 0}};
  visited.insert(root.get());
  while (!stack.empty()) {
    auto& [t, next] = stack.back();
    const auto& inputs = t->grad_fn->inputs;
    if (next < inputs.size()) {
      const ImplPtr& in = inputs[next++];
      if (in && in->grad_fn && visited.insert(in.get()).second) stack.push_back({in, 0});
    } else {
      order.push_back(t);
      stack.pop_back();
    }
  }
  std::reverse(order.begin(), order.end());
  return order;
}

// The input a view's gradient is (Node::gradient_is_input_gradient), or null.
static TensorImpl* view_base(const TensorImpl* t) {
  const Node* node = t->grad_fn.get();
  TensorImpl* base = node && node->gradient_is_input_gradient ? node->inputs[0].get() : nullptr;
  return base && base->requires_grad ? base : nullptr;
}

// t's gradient buffer, made on first use: zeros, except that a view shares its input's buffer (made first if need
// be), so the ops consuming the view accumulate straight into it and the view's own backward has nothing left to do.
// Iterative: a chain of views may be long.
static void make_gradient(TensorImpl* t) {
  std::vector<TensorImpl*> chain{t};
  while (!chain.back()->grad) {
    TensorImpl* base = view_base(chain.back());
    if (!base) {
      chain.back()->grad = make_storage(static_cast<int64_t>(chain.back()->data->size()), 0.0f);
      break;
    }
    chain.push_back(base);
  }
  for (size_t k = chain.size() - 1; k-- > 0;) chain[k]->grad = chain[k + 1]->grad;
}

static void run_backward(const ImplPtr& root) {
  std::vector<ImplPtr> order = topological_order(root);
  for (ImplPtr& t : order) {
    TensorImpl* base = view_base(t.get());
    std::shared_ptr<Node> node = std::move(t->grad_fn);  // frees the tape entry when this iteration ends
    t->graph_freed = true;
    if (base && t->grad && t->grad == base->grad) {  // a view whose gradient already is its input's
      t->grad.reset();
      t.reset();
      continue;
    }
    std::vector<float*> grad_in(node->inputs.size(), nullptr);
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      TensorImpl* in = node->inputs[i].get();
      if (!in || !in->requires_grad) continue;
      make_gradient(in);
      grad_in[i] = in->grad->data();
    }
    if (t->grad) node->backward(t->grad->data(), grad_in);
    t->grad.reset();  // an intermediate's gradient is consumed; only leaves keep theirs
    t.reset();        // and it may now be freed, with the node released above
  }
}

void Tensor::backward() {
  if (numel() != 1)
    fail("backward: called without a seed on a tensor of shape ", shape(),
         "; reduce it to one value first (e.g. sum or mean) or pass a seed of the same shape");
  backward(Tensor::ones(shape()));
}

void Tensor::backward(const Tensor& seed) {
  if (seed.shape() != shape()) fail("backward: seed shape ", seed.shape(), " differs from tensor shape ", shape());
  if (!requires_grad())
    fail("backward: this tensor does not require grad (no input had requires_grad, or it was computed in a NoGrad "
         "scope)");
  if (impl()->graph_freed)
    fail("backward: the graph of this tensor was already freed by an earlier backward(); recompute the forward pass");
  const float* s = seed.data();
  const int64_t n = numel();
  if (!impl()->grad) {  // the usual case: the gradient starts as a copy of the seed (no zero-fill first)
    impl()->grad = make_storage(s, n);
  } else {
    float* g = grad_data();
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) g[i] += s[i];
  }
  if (impl()->grad_fn) run_backward(impl());
}

}  // namespace eq
