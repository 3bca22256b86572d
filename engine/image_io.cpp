#include "engine/image_io.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

namespace eq {

Tensor load_image(const std::string& path, int channels) {
  if (channels != 0 && channels != 1 && channels != 3 && channels != 4)
    fail("load_image: ", path, ": channels must be 0 (as stored), 1, 3 or 4, not ", channels);
  int width = 0, height = 0, stored = 0;
  // stbi_load is not thread-safe only in its failure-reason string; loaders call it from one thread.
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(stbi_load(path.c_str(), &width, &height, &stored, channels),
                                                         stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    fail("load_image: ", path, ": ", reason ? reason : "unknown error");
  }
  const int c = channels ? channels : stored;
  // stb returns interleaved HWC bytes; tensors are planar CHW.
  Tensor image({c, height, width});
  float* out = image.data();
  const unsigned char* in = pixels.get();
  const int64_t plane = static_cast<int64_t>(height) * width;
  for (int64_t p = 0; p < plane; ++p)
    for (int k = 0; k < c; ++k) out[k * plane + p] = in[p * c + k] * (1.0f / 255.0f);
  return image;
}

void save_png(const std::string& path, const Tensor& image) {
  const Shape& s = image.shape();
  if (s.size() != 2 && s.size() != 3)
    fail("save_png: ", path, ": expected an image [C, H, W] or [H, W] but got shape ", s);
  const int64_t c = s.size() == 3 ? s[0] : 1;
  const int64_t h = s[s.size() - 2], w = s[s.size() - 1];
  if (c < 1 || c > 4) fail("save_png: ", path, ": an image needs 1 to 4 channels but shape ", s, " has ", c);
  if (h < 1 || w < 1) fail("save_png: ", path, ": empty image of shape ", s);
  const int64_t plane = h * w;
  std::vector<unsigned char> bytes(static_cast<size_t>(plane * c));
  const float* in = image.data();
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t k = 0; k < c; ++k) {
      const float v = in[k * plane + p];
      const float clamped = std::isnan(v) ? 0.0f : std::min(1.0f, std::max(0.0f, v));
      bytes[p * c + k] = static_cast<unsigned char>(std::lround(clamped * 255.0f));
    }
  if (!stbi_write_png(path.c_str(), static_cast<int>(w), static_cast<int>(h), static_cast<int>(c), bytes.data(),
                      static_cast<int>(w * c)))
    fail("save_png: ", path, ": could not write the file (missing folder or no permission?)");
}

bool has_image_extension(const std::string& path) {
  const size_t dot = path.find_last_of('.');
  const size_t slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return false;
  std::string ext = path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  for (const char* known : {"png", "jpg", "jpeg", "bmp", "gif", "tga", "pgm", "ppm", "psd", "hdr"})
    if (ext == known) return true;
  return false;
}

}  // namespace eq
