// equilab — checkpoints in the safetensors format (https://github.com/huggingface/safetensors), so a PyTorch
// user can open them with `safetensors.torch.load_file`, and we can read theirs (float32 tensors).
//
// File layout:
//   8 bytes   N, the header length, unsigned little-endian
//   N bytes   JSON header: {"__metadata__": {"key": "value", ...},
//                           "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//             padded with spaces to a multiple of 8 (so the data starts 8-byte aligned), as the reference writer
//   rest      the tensors' raw little-endian bytes, row-major; offsets are relative to the start of this part
// We write the JSON compactly (no spaces), "__metadata__" first, tensors in the order given, each tensor's data
// right after the previous one's. The reader is strict: the offsets must tile the data part exactly (no gaps,
// overlaps or trailing bytes) and match each shape; anything else is an error naming the file and the problem.
//
// Saving is atomic: the bytes go to a fresh temporary file next to `path`, which is flushed to disk (fsync) and
// then renamed over `path`. A crash or a failed save leaves the previous checkpoint at `path` untouched.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace eq {

// Ordered (name, tensor) pairs: a model's parameters and buffers, an optimizer's state, a checkpoint's contents.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using CheckpointMetadata = std::map<std::string, std::string>;

struct Checkpoint {
  NamedTensors tensors;  // in file (data offset) order; fresh tensors, no autograd
  CheckpointMetadata metadata;

  // The tensor called `name`, or an error listing what the checkpoint holds.
  const Tensor& get(const std::string& name) const;
  bool contains(const std::string& name) const;
};

// Appends s to out as a JSON string literal (quotes, backslash, short control escapes, other control bytes as
// \u00xx, UTF-8 verbatim): the safetensors header's escaping, shared with apps/common/json_writer.
void append_json_string(std::string& out, const std::string& s);

void save_safetensors(const std::string& path, const NamedTensors& tensors, const CheckpointMetadata& metadata = {});
Checkpoint load_safetensors(const std::string& path);

// Result of copying a checkpoint into existing tensors: names that were not matched (non-strict loads only; a
// strict load throws instead).
struct LoadReport {
  std::vector<std::string> missing;     // wanted by `targets`, absent from the checkpoint
  std::vector<std::string> unexpected;  // in the checkpoint, not wanted by `targets`
};

// Copies each checkpoint tensor into the target of the same name (its storage: parameters keep their identity).
// A shape mismatch is always an error; in strict mode so are missing and unexpected names. All checks run before
// anything is copied, and the error lists every problem at once.
LoadReport load_into(const Checkpoint& checkpoint, const NamedTensors& targets, bool strict = true);
LoadReport load_into(const std::string& path, const NamedTensors& targets, bool strict = true);

// Several sets in one file: with_prefix("optim.", opt.state()) names each tensor "optim.<name>";
// strip_prefix(ckpt.tensors, "optim.") keeps the entries that start with the prefix, without it.
NamedTensors with_prefix(const std::string& prefix, const NamedTensors& tensors);
NamedTensors strip_prefix(const NamedTensors& tensors, const std::string& prefix);

}  // namespace eq
