// equilab — the Tensor: a handle to contiguous float32 storage with a shape, and (optionally) autograd state.
//
// A Tensor is cheap to copy: copies share the same TensorImpl, like a shared_ptr. Data is always contiguous and
// row-major (the last axis varies fastest); reshape() shares storage, every other op writes a new tensor.
// Shapes have 0 to 5 axes in practice: [N, C, H, W] images, [N, C, S, H, W] scale or group axes.
//
// Autograd state lives next to the data: `requires_grad`, a lazily allocated `grad` of the same shape, and
// `grad_fn`, the tape node that produced this tensor (see autograd.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"

namespace eq {

using Shape = std::vector<int64_t>;
struct Node;
class Rng;

int64_t shape_numel(const Shape& shape);

// Tensor storage: a float vector whose allocator leaves new elements uninitialised, so that a large buffer is
// filled once, by all threads (make_storage), instead of zeroed by one thread first and written again after.
template <class T>
struct UninitialisedAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitialisedAllocator<U>;
  };
  UninitialisedAllocator() = default;
  template <class U>
  UninitialisedAllocator(const UninitialisedAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;  // default-initialisation: no value for a float
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using FloatBuffer = std::vector<float, UninitialisedAllocator<float>>;
using Storage = std::shared_ptr<FloatBuffer>;

// n floats, every one set to fill (in parallel when n is large).
Storage make_storage(int64_t n, float fill);
// A copy of values[0 .. n) (in parallel when n is large).
Storage make_storage(const float* values, int64_t n);

struct TensorImpl {
  Storage data;  // shared between a tensor and its reshape()d views
  Shape shape;
  bool requires_grad = false;
  Storage grad;  // empty until a backward pass writes to it
  std::shared_ptr<Node> grad_fn;             // null for leaves and for tensors made without grad
  bool graph_freed = false;                  // set when backward() released this tensor's tape
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false
  explicit Tensor(Shape shape, float fill = 0.0f);

  // Factories.
  static Tensor zeros(Shape shape) { return Tensor(std::move(shape), 0.0f); }
  static Tensor ones(Shape shape) { return Tensor(std::move(shape), 1.0f); }
  static Tensor full(Shape shape, float value) { return Tensor(std::move(shape), value); }
  // Storage left unset: only for op outputs whose kernel writes every element before anything reads it.
  static Tensor empty(Shape shape);
  static Tensor scalar(float value) { return Tensor(Shape{}, value); }
  static Tensor from(Shape shape, std::vector<float> values);              // checks numel
  static Tensor randn(Shape shape, Rng& rng, float mean = 0, float std = 1);  // normal
  static Tensor uniform(Shape shape, Rng& rng, float lo = 0, float hi = 1);   // uniform [lo, hi)
  static Tensor arange(int64_t n);                                          // 0, 1, ..., n-1

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int dim() const { return static_cast<int>(shape().size()); }
  int64_t size(int axis) const;  // negative axes count from the end
  int64_t numel() const;

  float* data();
  const float* data() const;
  float item() const;  // the single value of a one-element tensor
  std::vector<float> to_vector() const;
  float at(std::initializer_list<int64_t> index) const;  // bounds-checked read, for tests and small tools

  // Autograd.
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);  // only on leaves
  bool has_grad() const;
  Tensor grad() const;  // a tensor sharing the grad buffer (undefined if none was written)
  float* grad_data();   // allocates a zero grad if needed
  void zero_grad();     // drops the grad buffer
  bool is_leaf() const;
  void backward();                    // for a one-element tensor: seeds d(this)/d(this) = 1
  void backward(const Tensor& seed);  // seeds d(loss)/d(this) = seed (same shape)

  Tensor detach() const;  // same data, no autograd history
  Tensor clone() const;   // copied data, no autograd history
  void copy_from(const Tensor& src);  // writes src's values into this tensor's storage (same numel)

  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

 private:
  const TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

// Normalises a possibly negative axis against rank `dim`; throws "op: axis a out of range for shape [..]".
int normalize_axis(int axis, const Shape& shape, const char* op);

}  // namespace eq
