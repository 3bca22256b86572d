#include "layers/pooling.h"

namespace eq {

static Pool2dOptions square_pool(const char* layer, int kernel, int stride, int padding) {
  check(kernel >= 1 && padding >= 0, layer, ": kernel must be >= 1 and padding >= 0 (got kernel ", kernel,
        ", padding ", padding, ")");
  Pool2dOptions o;
  o.kernel_h = o.kernel_w = kernel;
  o.stride_h = o.stride_w = stride < 0 ? kernel : stride;
  o.pad_h = o.pad_w = padding;
  check(o.stride_h >= 1, layer, ": stride must be >= 1 (got ", stride, ")");
  return o;
}

static std::string pool_name(const char* layer, const Pool2dOptions& o) {
  return std::string(layer) + "(k=" + std::to_string(o.kernel_h) + ", stride=" + std::to_string(o.stride_h) +
         (o.pad_h ? ", pad=" + std::to_string(o.pad_h) : "") + ")";
}

MaxPool2d::MaxPool2d(int kernel, int stride, int padding) : opt_(square_pool("MaxPool2d", kernel, stride, padding)) {}
std::string MaxPool2d::name() const { return pool_name("MaxPool2d", opt_); }

AvgPool2d::AvgPool2d(int kernel, int stride, int padding) : opt_(square_pool("AvgPool2d", kernel, stride, padding)) {}
std::string AvgPool2d::name() const { return pool_name("AvgPool2d", opt_); }

}  // namespace eq
