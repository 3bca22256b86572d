// equilab apps/sie — multi-view data with a known group element per view (see views.h).
#include "apps/sie/views.h"

#include <algorithm>
#include <cmath>

#include "apps/common/render3d.h"
#include "augment/affine.h"
#include "augment/rotation.h"
#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/shape_ops.h"

namespace eq {

namespace {

// Throws unless rows r1 and r2 exist and show the same object (op names the caller for the message).
void check_same_object(const ViewSet& set, int64_t r1, int64_t r2, const char* op, int64_t pair) {
  const int64_t n = set.data.size(), v = set.views_per_object;
  check(v >= 1, op, ": ", set.data.name, " has no views per object set");
  if (r1 < 0 || r1 >= n || r2 < 0 || r2 >= n)
    fail(op, ": pair ", pair, " (rows ", r1, ", ", r2, ") is out of range for ", set.data.name, " of ", n,
         " views");
  if (r1 / v != r2 / v)
    fail(op, ": pair ", pair, " joins rows ", r1, " and ", r2, " of ", set.data.name, ", which show different objects (",
         r1 / v, " and ", r2 / v, " with ", v, " views each)");
}

}  // namespace

std::vector<float> ViewSet::relative(int64_t r1, int64_t r2) const {
  check_same_object(*this, r1, r2, "ViewSet::relative", 0);
  check(poses.defined() && poses.dim() == 2 && poses.size(0) == data.size(),
        "ViewSet::relative: poses must be [", data.size(), ", P], got ", poses.defined() ? poses.shape() : Shape{});
  const int64_t p = poses.size(1);
  const float* a = poses.data() + r1 * p;
  const float* b = poses.data() + r2 * p;
  if (group_dim == 4 && p == 4) {
    // q_rel = canonical(q2 * conj(q1)): R(q_rel) R(q1) = R(q2), the rotation taking view 1's pose to view 2's.
    const Quat q = relative_rotation(Quat{a[0], a[1], a[2], a[3]}, Quat{b[0], b[1], b[2], b[3]});
    return {q.w, q.x, q.y, q.z};
  }
  if (group_dim == 2 && p == 1) {
    // (cos, sin) rather than the angle itself: continuous on the circle, and a linear function of it is what a
    // hypernetwork predictor A(g) = sum_i g_i A_i can turn into a 2-D rotation of the embedding.
    const double t = static_cast<double>(b[0]) - static_cast<double>(a[0]);
    return {static_cast<float>(std::cos(t)), static_cast<float>(std::sin(t))};
  }
  fail("ViewSet::relative: group_dim ", group_dim, " with poses ", poses.shape(),
       " is neither a quaternion (4, [N, 4]) nor an angle (2, [N, 1])");
}

PairBatch gather_pairs(const ViewSet& set, const std::vector<std::pair<int64_t, int64_t>>& rows) {
  const int64_t b = static_cast<int64_t>(rows.size());
  check(b >= 1, "gather_pairs: no pairs given");
  check(set.group_dim >= 1, "gather_pairs: ", set.data.name, " has group_dim ", set.group_dim);
  const Shape& shape = set.data.images.shape();
  check(shape.size() == 4 && shape[0] == set.data.size(), "gather_pairs: images must be [N, C, H, W] with N = ",
        set.data.size(), " labels, got ", shape);
  const int64_t sample = shape[1] * shape[2] * shape[3];
  PairBatch out;
  out.first = Tensor({b, shape[1], shape[2], shape[3]});
  out.second = Tensor({b, shape[1], shape[2], shape[3]});
  out.group = Tensor({b, set.group_dim});
  const float* images = set.data.images.data();
  for (int64_t i = 0; i < b; ++i) {
    const auto [r1, r2] = rows[i];
    check_same_object(set, r1, r2, "gather_pairs", i);
    std::copy(images + r1 * sample, images + (r1 + 1) * sample, out.first.data() + i * sample);
    std::copy(images + r2 * sample, images + (r2 + 1) * sample, out.second.data() + i * sample);
    const std::vector<float> g = set.relative(r1, r2);
    std::copy(g.begin(), g.end(), out.group.data() + i * set.group_dim);
    out.labels.push_back(set.data.labels[r1]);
    out.first_rows.push_back(r1);
    out.second_rows.push_back(r2);
  }
  return out;
}

PairBatch sample_pairs(const ViewSet& set, const std::vector<int64_t>& objects, Rng& rng) {
  const int views = set.views_per_object;
  check(views >= 2, "sample_pairs: ", set.data.name, " has ", views, " view(s) per object; pairs need 2");
  std::vector<std::pair<int64_t, int64_t>> rows;
  rows.reserve(objects.size());
  for (int64_t k : objects) {
    if (k < 0 || k >= set.num_objects())
      fail("sample_pairs: object index ", k, " is out of range for ", set.data.name, " of ", set.num_objects(),
           " objects");
    const int64_t v1 = rng.randint(views);
    int64_t v2 = rng.randint(views - 1);
    if (v2 >= v1) ++v2;  // a different view, uniformly among the other V - 1
    rows.emplace_back(k * views + v1, k * views + v2);
  }
  return gather_pairs(set, rows);
}

ViewSet view_set_from_die_mini(const DieMiniDataset& set) {
  const int64_t n = set.data.size();
  check(set.views_per_object >= 1 && n % set.views_per_object == 0 &&
            static_cast<int64_t>(set.rotations.size()) == n,
        "view_set_from_die_mini: ", set.data.name, " has ", n, " views, ", set.rotations.size(), " rotations and ",
        set.views_per_object, " views per object");
  ViewSet out;
  out.data = set.data;
  out.data.images = set.data.images.clone();  // the ViewSet owns its pixels (the source may be freed)
  out.views_per_object = set.views_per_object;
  out.group_dim = 4;
  out.group_name = "SO(3) quaternion";
  out.poses = Tensor({n, 4});
  for (int64_t r = 0; r < n; ++r) {
    const Quat& q = set.rotations[r];
    float* dst = out.poses.data() + 4 * r;
    dst[0] = q.w, dst[1] = q.x, dst[2] = q.y, dst[3] = q.z;
  }
  return out;
}

ViewSet rotated_digits(const Dataset& digits, int views, uint64_t seed) {
  const Shape& shape = digits.images.shape();
  check(views >= 1, "rotated_digits: need views >= 1, got ", views);
  check(shape.size() == 4 && shape[0] == digits.size() && shape[0] >= 1,
        "rotated_digits: images must be [N, C, H, W] with N = ", digits.size(), " >= 1 labels, got ", shape);
  const int64_t m = digits.size(), n = m * views, c = shape[1], h = shape[2], w = shape[3], sample = c * h * w;

  // Angles first, in row order from one Rng, so the set depends on the seed only (not on threads or chunking).
  ViewSet out;
  out.views_per_object = views;
  out.group_dim = 2;
  out.group_name = "SO(2) (cos, sin)";
  out.poses = Tensor({n, 1});
  Rng rng(seed);
  const float half_pi = static_cast<float>(M_PI / 2);
  for (int64_t r = 0; r < n; ++r) out.poses.data()[r] = rng.uniform(-half_pi, half_pi);

  out.data.num_classes = digits.num_classes;
  out.data.class_names = digits.class_names;
  out.data.name = digits.name + "/rotated";
  out.data.labels.resize(n);
  out.data.images = Tensor({n, c, h, w});
  // Rotate in chunks: one [chunk, 2, 3] theta and one warp per chunk keeps the temporaries small.
  NoGrad no_grad;
  const int64_t chunk = 4096;
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t end = std::min(n, begin + chunk), count = end - begin;
    Tensor source({count, c, h, w});
    Tensor theta({count, 2, 3});
    for (int64_t r = begin; r < end; ++r) {
      const int64_t object = r / views;
      std::copy(digits.images.data() + object * sample, digits.images.data() + (object + 1) * sample,
                source.data() + (r - begin) * sample);
      const float degrees = static_cast<float>(out.poses.data()[r] * 180.0 / M_PI);
      const Tensor t = rotation_theta(1, degrees, h, w);
      std::copy(t.data(), t.data() + 6, theta.data() + (r - begin) * 6);
      out.data.labels[r] = digits.labels[object];
    }
    const Tensor rotated = warp_affine(source, theta);
    std::copy(rotated.data(), rotated.data() + count * sample, out.data.images.data() + begin * sample);
  }
  return out;
}

}  // namespace eq
