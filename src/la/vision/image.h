// Images as CLIP's own transform sees them: a JPEG or PNG file decoded to 8-bit RGB exactly as
// PIL's `Image.open(f).convert("RGB")` does.
//
// Decoders: libjpeg-turbo (Debian's libjpeg62-turbo) and libpng (libpng16). libjpeg-turbo is the
// library PIL itself decodes JPEG with, so with the same settings (ISLOW DCT, fancy upsampling:
// the defaults on both sides) the decoded pixels are PIL's. libpng gives the raw samples, and the
// conversions to RGB below are written to match PIL's:
//   - grey 1/2/4-bit: scaled to 8 bits (x255, x85, x17); grey 8-bit: replicated to R=G=B;
//   - grey 16-bit: PIL opens it as a 32-bit integer image whose conversion to RGB clamps at 255
//     (values are not scaled: 256..65535 all become 255);
//   - every other 16-bit PNG (grey+alpha, RGB, RGBA): the high byte of each sample;
//   - alpha (RGBA, grey+alpha) and palette/tRNS transparency are dropped, not composited;
//   - palette: looked up; greyscale JPEG replicated; no gamma, colour profile or EXIF rotation.
// CMYK/YCCK JPEGs are rejected (a one-line error), as are other formats.
//
// Hostile files: every failure is a la::Error naming the file (truncated data, a bad header, 0
// pixels, more than kMaxImagePixels before anything is allocated for them).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace la {

struct RgbImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height][width][3], row-major
  const uint8_t* at(int64_t x, int64_t y) const { return pixels.data() + 3 * (y * width + x); }
};

// The largest image decoded: 64 Mi pixels (8192 x 8192), 192 MiB as RGB.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

// Decodes a JPEG or PNG given as bytes; `name` is the file name errors quote.
RgbImage decode_image(std::span<const uint8_t> bytes, const std::string& name);
// Reads and decodes a file.
RgbImage load_image(const std::string& path);

}  // namespace la
