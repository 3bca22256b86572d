// equilab — reverse-mode automatic differentiation on a dynamic tape.
//
// An op that may need gradients calls record() on its output. The recorded Node keeps (a) the input tensors, so
// that backward() can walk the graph, and (b) a closure holding only what this op's backward needs (flashlight's
// rule: no output values unless the formula uses them). The closure's contract (micrograd's rule) is:
//
//     backward(grad_out, grad_in):  grad_in[i] += d(loss)/d(input i)    — only ever accumulate
//
// grad_in[i] is null when input i does not need a gradient, so an op can skip that work. Accumulating is what
// makes fan-out correct: a tensor used twice receives both contributions.
//
// Tensor::backward() orders the nodes without recursion, seeds the output gradient, runs the closures from the
// output back to the leaves, and frees the tape as it goes: each node (and the intermediate gradient it consumed)
// is released as soon as it has run. Leaves (parameters, inputs with requires_grad) keep their .grad, which
// accumulates across calls until zero_grad().
#pragma once
#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace eq {

using BackwardFn = std::function<void(const float* grad_out, const std::vector<float*>& grad_in)>;

struct Node {
  const char* op;                                   // for error messages: "conv2d", "matmul", ...
  std::vector<std::shared_ptr<TensorImpl>> inputs;  // graph edges
  BackwardFn backward;
  // A view (reshape, flatten, squeeze...): the output's gradient, element for element, is input 0's. backward()
  // gives the view input 0's gradient buffer, so the ops that consume the view accumulate straight into it (no
  // buffer of its own to zero-fill and add over: two passes over the tensor); `backward` runs only when the view
  // got a buffer of its own (it is the tensor backward() was called on).
  bool gradient_is_input_gradient = false;
};

// Is gradient recording on in this thread? Off inside a NoGrad scope.
bool grad_enabled();

// RAII scope that turns recording off (evaluation, metrics, optimizer updates).
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// True when recording is on and at least one input requires a gradient: ops test this before they capture
// anything for backward.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attaches a tape node to `out` (which must be freshly made by the op). A no-op when no input requires grad.
void record(Tensor& out, const char* op, std::vector<Tensor> inputs, BackwardFn backward);
// The same for a view of x with x's elements in x's order (out.numel() == x.numel()): backward passes the gradient
// through (Node::gradient_is_input_gradient).
void record_view(Tensor& out, const char* op, const Tensor& x);

}  // namespace eq
