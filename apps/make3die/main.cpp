// equilab make3die — render the 3DIE-mini dataset (procedural 3D objects from known rotations) and a sample grid.
//
//   build/make3die --objects 2000 --views 10 --size 32 --seed 0 --out data/3die-mini --threads 2
//
// Writes <out>/3die-mini_o<objects>_v<views>_s<size>_seed<seed>.bin (format in apps/common/die_mini.h) and
// <out>/samples.png: one row per class, the first columns several views of one object, the rest other objects
// of the class. An existing file for the same configuration is reused unless --force.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "apps/common/cli.h"
#include "apps/common/die_mini.h"
#include "apps/common/plot.h"
#include "engine/parallel.h"

using namespace eq;
namespace fs = std::filesystem;

// Rows = classes; columns: `views_shown` views of the class's first object, then view 0 of further objects.
static void write_sample_grid(const DieMini& set, const std::string& path, int views_shown, int others) {
  const DieMiniConfig& c = set.config;
  views_shown = std::min(views_shown, c.views);
  const int columns = views_shown + others;
  std::vector<int64_t> rows;
  std::vector<std::string> captions;
  for (int cls = 0; cls < kDieMiniClasses; ++cls) {
    if (cls >= c.objects) break;
    for (int col = 0; col < columns; ++col) {
      const bool same_object = col < views_shown;
      const int object = cls + kDieMiniClasses * (same_object ? 0 : col - views_shown + 1);
      if (object >= c.objects) {
        rows.push_back(-1);  // a blank tile keeps the grid rectangular
        captions.push_back("");
        continue;
      }
      rows.push_back(int64_t(object) * c.views + (same_object ? col : 0));
      captions.push_back(col == 0 ? die_mini_class_names()[cls] : "");
    }
  }
  const int64_t s = c.image_size, bytes = 3 * s * s;
  Tensor images({static_cast<int64_t>(rows.size()), 3, s, s}, 1.0f);
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i] >= 0)
      for (int64_t j = 0; j < bytes; ++j) images.data()[i * bytes + j] = set.image(rows[i])[j] / 255.0f;
  GridOptions options;
  options.columns = columns;
  options.scale = 3;
  options.captions = captions;
  options.title = "3DIE-mini: " + std::to_string(views_shown) + " views of one object, then other objects";
  write_image_grid(path, images, options);
}

int main(int argc, char** argv) {
  eq::use_fast_blas_kernels(argv);  // before anything else: it may restart the program
  Flags flags("make3die", "Render the 3DIE-mini dataset: procedural 3D objects, known rotations, 32x32 RGB.");
  flags.add("objects", "2000", "number of objects (class = object id mod 13)");
  flags.add("views", "10", "views per object");
  flags.add("size", "32", "image side in pixels");
  flags.add("seed", "0", "random seed (the same seed gives the same bytes on any thread count)");
  flags.add("supersample", "2", "n x n rays per pixel (antialiasing)");
  flags.add("threads", "2", "OpenMP threads");
  flags.add("out", "data/3die-mini", "output folder");
  flags.add("grid", "", "sample-grid PNG (default <out>/samples.png)");
  flags.add("force", "false", "render again even if the file exists");
  try {
    if (!flags.parse(argc, argv)) return 0;
    set_num_threads(flags.get_int("threads"));
    DieMiniConfig config;
    config.objects = flags.get_int("objects");
    config.views = flags.get_int("views");
    config.image_size = flags.get_int("size");
    config.seed = static_cast<uint64_t>(flags.get_int("seed"));
    config.supersample = flags.get_int("supersample");
    const std::string out = flags.get("out");
    const std::string path = (fs::path(out) / die_mini_file_name(config)).string();
    if (flags.get_bool("force") && fs::exists(path)) fs::remove(path);

    const auto start = std::chrono::steady_clock::now();
    const bool cached = fs::exists(path);
    const DieMini set = load_or_generate_die_mini(out, config, /*verbose=*/true);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (cached)
      std::printf("make3die: loaded %s (already there; --force renders again) in %.2f s\n", path.c_str(), seconds);
    else
      std::printf("make3die: rendered %lld views in %.1f s (%.0f views/s on %d threads), wrote %s (%.1f MB)\n",
                  static_cast<long long>(set.num_views()), seconds, set.num_views() / seconds, num_threads(),
                  path.c_str(), fs::file_size(path) / 1e6);

    const std::string grid = flags.get("grid").empty() ? (fs::path(out) / "samples.png").string() : flags.get("grid");
    write_sample_grid(set, grid, 4, 4);
    std::printf("make3die: sample grid %s\n", grid.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "make3die: %s\n", e.what());
    return 1;
  }
  return 0;
}
