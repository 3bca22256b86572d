// equilab apps/sie — multi-view data with a known group element per view: the input of SIE training and
// evaluation. Two sources share one form:
//   3DIE-mini (apps/common/die_mini.h): V rendered views per object, group element = the view's rotation quaternion
//     (w, x, y, z), relative element q_rel = q2 * conj(q1) (w >= 0), group_dim 4;
//   rotated digits: V copies of each MNIST / Fashion-MNIST digit, each rotated by its own angle uniform in
//     [-pi/2, pi/2], relative element (cos(t2 - t1), sin(t2 - t1)), group_dim 2.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "apps/common/datasets.h"
#include "apps/common/die_mini.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

// V views of each of M objects, object-major: row r is view r % V of object r / V.
struct ViewSet {
  Dataset data;               // images [M * V, C, H, W] in [0, 1]; labels = class of the object
  int views_per_object = 0;
  int group_dim = 0;          // 4 (quaternion) or 2 (cos, sin)
  Tensor poses;               // [M * V, P]: each view's absolute pose (quaternion w,x,y,z, or the angle [M * V, 1])
  std::string group_name;     // "SO(3) quaternion" or "SO(2) (cos, sin)": for tables

  int64_t num_objects() const { return views_per_object ? data.size() / views_per_object : 0; }
  // The group element taking view row r1 to view row r2 of the same object: group_dim numbers.
  std::vector<float> relative(int64_t r1, int64_t r2) const;
};

// Two views of the same object and the relative group element between them.
struct PairBatch {
  Tensor first, second;  // [B, C, H, W]
  Tensor group;          // [B, group_dim]: relative(first_rows[b], second_rows[b])
  std::vector<int> labels;
  std::vector<int64_t> first_rows, second_rows;
};

// For each object index in `objects` (0 .. num_objects() - 1) two different views drawn with rng.
PairBatch sample_pairs(const ViewSet& set, const std::vector<int64_t>& objects, Rng& rng);
// The given row pairs (each pair from one object; throws naming the rows otherwise).
PairBatch gather_pairs(const ViewSet& set, const std::vector<std::pair<int64_t, int64_t>>& rows);

// 3DIE-mini views as a ViewSet (copies the images; poses = quaternions).
ViewSet view_set_from_die_mini(const DieMiniDataset& set);

// Rotated digits: `views` rotated copies (bilinear, zero outside, about the image centre) of each digit of
// `digits`, angle per copy uniform in [-pi/2, pi/2] from an Rng seeded with `seed`.
ViewSet rotated_digits(const Dataset& digits, int views, uint64_t seed);

}  // namespace eq
