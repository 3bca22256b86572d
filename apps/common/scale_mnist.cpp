#include "apps/common/scale_mnist.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <queue>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"

namespace eq {

Dataset concat_datasets(const Dataset& a, const Dataset& b, const std::string& name) {
  check(a.images.dim() == 4 && b.images.dim() == 4 && a.images.size(1) == b.images.size(1) &&
            a.images.size(2) == b.images.size(2) && a.images.size(3) == b.images.size(3),
        "concat_datasets: image shapes differ (", a.name, " ", a.images.shape(), ", ", b.name, " ",
        b.images.shape(), ")");
  check(a.num_classes == b.num_classes, "concat_datasets: ", a.name, " has ", a.num_classes, " classes but ",
        b.name, " has ", b.num_classes);
  Dataset out;
  out.images = concat({a.images, b.images}, 0);
  out.labels = a.labels;
  out.labels.insert(out.labels.end(), b.labels.begin(), b.labels.end());
  out.num_classes = a.num_classes;
  out.name = name;
  out.class_names = a.class_names;
  return out;
}

Dataset load_merged_pool(const std::string& name, const std::string& data_root) {
  const std::string canonical = name == "fashion" ? "fashion-mnist" : name;
  check(canonical == "mnist" || canonical == "fashion-mnist", "load_merged_pool: unknown dataset '", name,
        "' (choose mnist or fashion)");
  return concat_datasets(load_dataset(canonical, true, data_root), load_dataset(canonical, false, data_root),
                         canonical + "/all");
}

namespace {

// Maximum flow by shortest augmenting paths (Edmonds–Karp) on a dense capacity matrix: the graphs here have a few
// dozen nodes. Returns the flow; `cap` is left as the residual capacities.
int64_t max_flow(std::vector<std::vector<int64_t>>& cap, int source, int sink) {
  const int n = static_cast<int>(cap.size());
  int64_t total = 0;
  for (;;) {
    std::vector<int> parent(n, -1);
    parent[source] = source;
    std::queue<int> q;
    q.push(source);
    while (!q.empty() && parent[sink] < 0) {
      const int u = q.front();
      q.pop();
      for (int v = 0; v < n; ++v)
        if (parent[v] < 0 && cap[u][v] > 0) parent[v] = u, q.push(v);
    }
    if (parent[sink] < 0) return total;
    int64_t push = std::numeric_limits<int64_t>::max();
    for (int v = sink; v != source; v = parent[v]) push = std::min(push, cap[parent[v]][v]);
    for (int v = sink; v != source; v = parent[v]) cap[parent[v]][v] -= push, cap[v][parent[v]] += push;
    total += push;
  }
}

}  // namespace

std::vector<std::vector<int64_t>> stratified_counts(const std::vector<int64_t>& class_counts,
                                                    const std::vector<int64_t>& part_sizes) {
  int64_t pool = 0, wanted = 0;
  for (int64_t n : class_counts) {
    check(n >= 0, "stratified_counts: a class count is negative (", n, ")");
    pool += n;
  }
  for (int64_t s : part_sizes) {
    check(s >= 0, "stratified_counts: a part size is negative (", s, ")");
    wanted += s;
  }
  check(pool > 0, "stratified_counts: the pool is empty");
  check(wanted <= pool, "stratified_counts: the parts ask for ", wanted, " images but the pool holds only ", pool);
  // The exact table T[c][s] = n_c * size_s / N, with one more column for the unused rest so that rows sum to n_c.
  // Rounding each cell down leaves integer row and column deficits; a 0/1 choice among the cells with a nonzero
  // fraction that meets them is a flow source -> class -> part -> sink, and the fractional table is itself a
  // feasible fractional flow, so an integral one exists (integrality of max-flow).
  std::vector<int64_t> sizes = part_sizes;
  sizes.push_back(pool - wanted);
  const int classes = static_cast<int>(class_counts.size()), parts = static_cast<int>(sizes.size());
  std::vector<std::vector<int64_t>> counts(classes, std::vector<int64_t>(parts));
  const int source = 0, sink = 1 + classes + parts;
  std::vector<std::vector<int64_t>> cap(sink + 1, std::vector<int64_t>(sink + 1, 0));
  std::vector<int64_t> column_deficit = sizes;
  for (int c = 0; c < classes; ++c) {
    int64_t row_deficit = class_counts[c];
    for (int s = 0; s < parts; ++s) {
      const int64_t numerator = class_counts[c] * sizes[s];
      counts[c][s] = numerator / pool;
      row_deficit -= counts[c][s];
      column_deficit[s] -= counts[c][s];
      if (numerator % pool != 0) cap[1 + c][1 + classes + s] = 1;
    }
    cap[source][1 + c] = row_deficit;
  }
  int64_t needed = 0;
  for (int s = 0; s < parts; ++s) cap[1 + classes + s][sink] = column_deficit[s], needed += column_deficit[s];
  const int64_t flow = max_flow(cap, source, sink);
  check(flow == needed, "stratified_counts: no rounding found (flow ", flow, " of ", needed, ")");
  for (int c = 0; c < classes; ++c)
    for (int s = 0; s < parts; ++s)
      if (cap[1 + classes + s][1 + c] > 0) ++counts[c][s];  // flow went through this cell
  for (auto& row : counts) row.pop_back();
  return counts;
}

std::vector<std::vector<int64_t>> stratified_split(const std::vector<int>& labels, int num_classes,
                                                   const std::vector<int64_t>& part_sizes, uint64_t seed) {
  check(num_classes >= 1, "stratified_split: num_classes must be >= 1 (got ", num_classes, ")");
  std::vector<std::vector<int64_t>> by_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) {
    check(labels[i] >= 0 && labels[i] < num_classes, "stratified_split: label ", labels[i], " of sample ", i,
          " is outside [0, ", num_classes, ")");
    by_class[labels[i]].push_back(static_cast<int64_t>(i));
  }
  std::vector<int64_t> class_counts;
  for (auto& members : by_class) class_counts.push_back(static_cast<int64_t>(members.size()));
  const auto counts = stratified_counts(class_counts, part_sizes);
  Rng rng(seed);
  std::vector<std::vector<int64_t>> parts(part_sizes.size());
  for (int c = 0; c < num_classes; ++c) {
    const std::vector<int64_t> order = shuffled_indices(class_counts[c], rng);
    size_t next = 0;
    for (size_t s = 0; s < parts.size(); ++s)
      for (int64_t k = 0; k < counts[c][s]; ++k) parts[s].push_back(by_class[c][order[next++]]);
  }
  for (auto& part : parts) {
    const std::vector<int64_t> order = shuffled_indices(static_cast<int64_t>(part.size()), rng);
    std::vector<int64_t> shuffled(part.size());
    for (size_t i = 0; i < part.size(); ++i) shuffled[i] = part[order[i]];
    part = std::move(shuffled);
  }
  return parts;
}

Tensor rescale_each(const Tensor& images, const std::vector<float>& factors, ResizeMode mode, bool antialias) {
  check(images.dim() == 4, "rescale_each: images must be [N, C, H, W], got ", images.shape());
  check(static_cast<int64_t>(factors.size()) == images.size(0), "rescale_each: ", factors.size(),
        " factors for images ", images.shape());
  NoGrad no_grad;
  const int64_t n = images.size(0), plane = images.numel() / std::max<int64_t>(1, n);
  Tensor out(images.shape());
  for (int64_t i = 0; i < n; ++i) {
    const Tensor one = slice(images, 0, i, i + 1);
    const Tensor scaled = factors[i] == 1.0f ? one : rescale_about_center(one, factors[i], mode, antialias);
    const float* src = scaled.data();
    float* dst = out.data() + i * plane;
    for (int64_t j = 0; j < plane; ++j) dst[j] = std::clamp(src[j], 0.0f, 1.0f);
  }
  return out;
}

ScaleDataset make_scale_dataset(const Dataset& pool, const ScaleDatasetOptions& o) {
  check(o.min_factor > 0 && o.min_factor <= o.max_factor, "make_scale_dataset: the factor range must satisfy "
        "0 < min <= max (got [", o.min_factor, ", ", o.max_factor, "])");
  const auto parts = stratified_split(pool.labels, pool.num_classes, {o.train, o.val, o.test}, o.seed);
  Rng factor_rng(o.seed + 0x5CA1E);
  auto build = [&](const std::vector<int64_t>& indices, const std::string& part) {
    ScaledPart p;
    p.pool_index = indices;
    for (size_t i = 0; i < indices.size(); ++i) p.factors.push_back(factor_rng.uniform(o.min_factor, o.max_factor));
    Batch b = gather_batch(pool, indices);
    p.data.images = rescale_each(b.images, p.factors, o.mode, o.antialias);
    p.data.labels = std::move(b.labels);
    p.data.num_classes = pool.num_classes;
    p.data.class_names = pool.class_names;
    p.data.name = pool.name + "-scale/" + part;
    return p;
  };
  ScaleDataset d;
  d.train = build(parts[0], "train");
  d.val = build(parts[1], "val");
  d.test = build(parts[2], "test");
  return d;
}

}  // namespace eq
