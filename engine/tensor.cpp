#include "engine/tensor.h"

#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "engine/autograd.h"
#include "engine/parallel.h"
#include "engine/rng.h"

namespace eq {

namespace {

// Keep freed tensor storage in the process. By default glibc serves blocks above its mmap threshold with fresh
// mappings and trims the heap top back to the OS, so the output and gradient buffers that every op allocates anew
// (12.8 MB each for a [64, 16, 4, 28, 28] scale convolution) page-fault and are zeroed by the kernel on every step,
// before we zero them again: with these settings a scale convolution's forward + backward went from 55 to 36 ms
// (2 threads). Blocks up to 32 MB (glibc's maximum threshold) now come from the heap and are reused; the heap is
// trimmed only when more than 1 GiB is free at its top. Peak memory is unchanged; it is just not returned early.
struct KeepFreedStorage {
  KeepFreedStorage() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  }
} const keep_freed_storage;

}  // namespace

Storage make_storage(int64_t n, float fill) {
  auto s = std::make_shared<FloatBuffer>(static_cast<size_t>(n));
  float* p = s->data();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) p[i] = fill;
  return s;
}

Storage make_storage(const float* values, int64_t n) {
  auto s = std::make_shared<FloatBuffer>(static_cast<size_t>(n));
  float* p = s->data();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) p[i] = values[i];
  return s;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("tensor: negative size in shape ", shape);
    n *= d;
  }
  return n;
}

int normalize_axis(int axis, const Shape& shape, const char* op) {
  const int rank = static_cast<int>(shape.size());
  if (axis < -rank || axis >= rank) fail(op, ": axis ", axis, " out of range for shape ", shape);
  return axis < 0 ? axis + rank : axis;
}

Tensor::Tensor(Shape shape, float fill) : impl_(std::make_shared<TensorImpl>()) {
  const int64_t n = shape_numel(shape);
  impl_->data = make_storage(n, fill);
  impl_->shape = std::move(shape);
}

Tensor Tensor::from(Shape shape, std::vector<float> values) {
  const int64_t n = shape_numel(shape);
  if (n != static_cast<int64_t>(values.size()))
    fail("Tensor::from: shape ", shape, " holds ", n, " values but ", values.size(), " were given");
  Tensor t;
  t.impl_ = std::make_shared<TensorImpl>();
  t.impl_->data = make_storage(values.data(), n);
  t.impl_->shape = std::move(shape);
  return t;
}

Tensor Tensor::empty(Shape shape) {
  const int64_t n = shape_numel(shape);
  Tensor t;
  t.impl_ = std::make_shared<TensorImpl>();
  t.impl_->data = std::make_shared<FloatBuffer>(static_cast<size_t>(n));
  t.impl_->shape = std::move(shape);
  return t;
}

Tensor Tensor::randn(Shape shape, Rng& rng, float mean, float std) {
  Tensor t(std::move(shape));
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = mean + std * rng.normal();
  return t;
}

Tensor Tensor::uniform(Shape shape, Rng& rng, float lo, float hi) {
  Tensor t(std::move(shape));
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform(lo, hi);
  return t;
}

Tensor Tensor::arange(int64_t n) {
  Tensor t(Shape{n});
  for (int64_t i = 0; i < n; ++i) t.data()[i] = static_cast<float>(i);
  return t;
}

const TensorImpl& Tensor::checked() const {
  if (!impl_) throw Error("tensor: use of an undefined (default-constructed) tensor");
  return *impl_;
}

const Shape& Tensor::shape() const { return checked().shape; }

int64_t Tensor::size(int axis) const { return shape()[normalize_axis(axis, shape(), "size")]; }

int64_t Tensor::numel() const { return static_cast<int64_t>(checked().data->size()); }

float* Tensor::data() { return checked().data->data(); }
const float* Tensor::data() const { return checked().data->data(); }

float Tensor::item() const {
  if (numel() != 1) fail("item: tensor of shape ", shape(), " has ", numel(), " values, not one");
  return data()[0];
}

std::vector<float> Tensor::to_vector() const { return {checked().data->begin(), checked().data->end()}; }

float Tensor::at(std::initializer_list<int64_t> index) const {
  const Shape& s = shape();
  if (index.size() != s.size()) fail("at: ", index.size(), " indices for shape ", s);
  int64_t flat = 0, axis = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= s[axis]) fail("at: index ", i, " out of range for axis ", axis, " of shape ", s);
    flat = flat * s[axis] + i;
    ++axis;
  }
  return data()[flat];
}

bool Tensor::requires_grad() const { return checked().requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  if (checked().grad_fn) fail("set_requires_grad: only leaf tensors can change requires_grad (this one came from ",
                              impl_->grad_fn->op, ")");
  impl_->requires_grad = on;
  return *this;
}

bool Tensor::has_grad() const { return checked().grad != nullptr; }

Tensor Tensor::grad() const {
  if (!has_grad()) return Tensor();
  auto g = std::make_shared<TensorImpl>();
  g->data = impl_->grad;
  g->shape = impl_->shape;
  return Tensor(g);
}

float* Tensor::grad_data() {
  checked();
  if (!impl_->grad) impl_->grad = make_storage(static_cast<int64_t>(impl_->data->size()), 0.0f);
  return impl_->grad->data();
}

void Tensor::zero_grad() { checked(), impl_->grad.reset(); }

bool Tensor::is_leaf() const { return checked().grad_fn == nullptr; }

Tensor Tensor::detach() const {
  auto d = std::make_shared<TensorImpl>();
  d->data = checked().data;
  d->shape = impl_->shape;
  return Tensor(d);
}

Tensor Tensor::clone() const { return Tensor::from(shape(), to_vector()); }

void Tensor::copy_from(const Tensor& src) {
  if (src.numel() != numel()) fail("copy_from: source ", src.shape(), " and destination ", shape(), " differ in size");
  if (numel() > 0) std::memcpy(data(), src.data(), sizeof(float) * static_cast<size_t>(numel()));
}

}  // namespace eq
