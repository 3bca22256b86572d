// equilab — reading and writing image files (PNG, JPEG, BMP, ... through stb_image / stb_image_write).
//
// Images in memory are float tensors [C, H, W] with values in [0, 1] (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA);
// files hold 8 bits per channel. Errors throw eq::Error naming the file and the reason stb gives.
#pragma once
#include <string>

#include "engine/tensor.h"

namespace eq {

// Decodes `path` into [C, H, W] in [0, 1]. channels = 0 keeps the file's own channel count; 1, 3 or 4 converts
// (e.g. 3 turns a grey PNG into RGB and drops alpha). 16-bit files are reduced to 8 bits by stb first.
Tensor load_image(const std::string& path, int channels = 0);

// Writes a [C, H, W] (C in 1..4) or [H, W] tensor as an 8-bit PNG. Values are clamped to [0, 1] and rounded;
// NaN becomes 0.
void save_png(const std::string& path, const Tensor& image);

// True when the file name ends in an extension load_image understands (.png .jpg .jpeg .bmp .gif .tga .pgm .ppm
// .psd .hdr, any case). Used to skip non-image files in a folder.
bool has_image_extension(const std::string& path);

}  // namespace eq
