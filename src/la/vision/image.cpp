#include "la/vision/image.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>

// clang-format off
#include <jpeglib.h>  // needs <cstdio> first
#include <jerror.h>
// clang-format on
#include <png.h>

#include "la/core/error.h"
#include "la/core/mapped_file.h"

namespace la {
namespace {

void check_size(const std::string& name, int64_t w, int64_t h) {
  if (w <= 0 || h <= 0) fail("{}: the image has {}x{} pixels", printable(name), w, h);
  if (w > kMaxImagePixels || h > kMaxImagePixels || w * h > kMaxImagePixels)
    fail("{}: {}x{} pixels is more than the {} Mi pixels an image may have", printable(name), w, h,
         kMaxImagePixels >> 20);
}

// ---- JPEG (libjpeg-turbo) ---------------------------------------------------------------------
// libjpeg reports errors through a callback that must not return: it longjmps back to
// decode_jpeg. Everything that outlives the jump lives in JpegState (on the heap, so nothing the
// jump skips has a destructor and nothing is cached in a register across it).
struct JpegState {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr err{};
  std::jmp_buf jump{};
  char message[JMSG_LENGTH_MAX] = {};
  bool created = false;
  RgbImage out;
  std::vector<uint8_t> row;
  ~JpegState() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

[[noreturn]] void jpeg_error_exit(j_common_ptr c) {
  auto* s = reinterpret_cast<JpegState*>(c->client_data);
  (*c->err->format_message)(c, s->message);
  std::longjmp(s->jump, 1);
}

// Warnings are ignored as PIL ignores them, except a premature end of data: PIL refuses
// truncated images (unless told otherwise), and libjpeg would fill the rest with grey.
void jpeg_emit_message(j_common_ptr c, int level) {
  if (level == -1 && c->err->msg_code == JWRN_JPEG_EOF) jpeg_error_exit(c);
}

RgbImage decode_jpeg(std::span<const uint8_t> bytes, const std::string& name) {
  auto s = std::make_unique<JpegState>();
  JpegState* st = s.get();
  st->cinfo.err = jpeg_std_error(&st->err);
  st->err.error_exit = jpeg_error_exit;
  st->err.emit_message = jpeg_emit_message;
  st->cinfo.client_data = st;
  if (setjmp(st->jump)) fail("{}: bad JPEG: {}", printable(name), st->message);
  jpeg_create_decompress(&st->cinfo);
  st->created = true;
  jpeg_mem_src(&st->cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&st->cinfo, TRUE);
  const int comps = st->cinfo.num_components;
  if (comps == 1) {
    st->cinfo.out_color_space = JCS_GRAYSCALE;
  } else if (comps == 3) {
    st->cinfo.out_color_space = JCS_RGB;
  } else {
    fail("{}: a JPEG with {} colour components ({}) is not supported: only greyscale and RGB/YCbCr", printable(name),
         comps, comps == 4 ? "CMYK or YCCK" : "unusual");
  }
  check_size(name, st->cinfo.image_width, st->cinfo.image_height);
  jpeg_start_decompress(&st->cinfo);
  const int64_t w = st->cinfo.output_width, h = st->cinfo.output_height;
  const int oc = st->cinfo.output_components;
  st->out.width = w;
  st->out.height = h;
  st->out.pixels.resize(static_cast<size_t>(w * h * 3));
  st->row.resize(static_cast<size_t>(w * oc));
  while (st->cinfo.output_scanline < st->cinfo.output_height) {
    const int64_t y = st->cinfo.output_scanline;
    JSAMPROW rows[1] = {st->row.data()};
    jpeg_read_scanlines(&st->cinfo, rows, 1);
    uint8_t* dst = st->out.pixels.data() + 3 * y * w;
    if (oc == 3) {
      std::memcpy(dst, st->row.data(), static_cast<size_t>(3 * w));
    } else {
      for (int64_t x = 0; x < w; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = st->row[static_cast<size_t>(x)];
    }
  }
  jpeg_finish_decompress(&st->cinfo);
  return std::move(st->out);
}

// ---- PNG (libpng) -----------------------------------------------------------------------------
struct PngState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::span<const uint8_t> bytes;
  size_t pos = 0;
  std::string message;
  std::vector<uint8_t> raw;
  std::vector<png_bytep> rows;
  ~PngState() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

[[noreturn]] void png_error_fn(png_structp png, png_const_charp msg) {
  auto* s = static_cast<PngState*>(png_get_error_ptr(png));
  s->message = msg;
  png_longjmp(png, 1);
}

void png_warning_fn(png_structp, png_const_charp) {}

void png_read_fn(png_structp png, png_bytep out, size_t n) {
  auto* s = static_cast<PngState*>(png_get_io_ptr(png));
  if (n > s->bytes.size() - s->pos) png_error(png, "the file ends early (truncated)");
  std::memcpy(out, s->bytes.data() + s->pos, n);
  s->pos += n;
}

RgbImage decode_png(std::span<const uint8_t> bytes, const std::string& name) {
  auto s = std::make_unique<PngState>();
  PngState* st = s.get();
  st->bytes = bytes;
  st->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, png_error_fn, png_warning_fn);
  if (!st->png) fail("{}: cannot start the PNG decoder", printable(name));
  st->info = png_create_info_struct(st->png);
  if (!st->info) fail("{}: cannot start the PNG decoder", printable(name));
  if (setjmp(png_jmpbuf(st->png))) fail("{}: bad PNG: {}", printable(name), printable(st->message));
  png_set_read_fn(st->png, st, png_read_fn);
  png_set_user_limits(st->png, static_cast<png_uint_32>(kMaxImagePixels), static_cast<png_uint_32>(kMaxImagePixels));
  png_read_info(st->png, st->info);
  const int64_t w = png_get_image_width(st->png, st->info), h = png_get_image_height(st->png, st->info);
  check_size(name, w, h);
  const int depth = png_get_bit_depth(st->png, st->info), type = png_get_color_type(st->png, st->info);
  // 16-bit grey is kept at 16 bits and clamped below (PIL's I;16 -> RGB); every other 16-bit
  // image keeps its high bytes (PIL's ";16B" raw modes).
  const bool grey16 = type == PNG_COLOR_TYPE_GRAY && depth == 16;
  if (!grey16) {
    if (depth == 16) png_set_strip_16(st->png);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(st->png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(st->png);
  }
  png_set_interlace_handling(st->png);
  png_read_update_info(st->png, st->info);
  const int channels = png_get_channels(st->png, st->info);
  const size_t row_bytes = png_get_rowbytes(st->png, st->info);
  if (channels < 1 || channels > 4 || row_bytes != static_cast<size_t>(w * channels * (grey16 ? 2 : 1)))
    fail("{}: unexpected PNG layout ({} channels, {} bytes per row)", printable(name), channels, row_bytes);
  st->raw.resize(row_bytes * static_cast<size_t>(h));
  st->rows.resize(static_cast<size_t>(h));
  for (int64_t y = 0; y < h; ++y)
    st->rows[static_cast<size_t>(y)] = st->raw.data() + static_cast<size_t>(y) * row_bytes;
  png_read_image(st->png, st->rows.data());
  png_read_end(st->png, nullptr);

  RgbImage out;
  out.width = w;
  out.height = h;
  out.pixels.resize(static_cast<size_t>(w * h * 3));
  const uint8_t* src = st->raw.data();
  uint8_t* dst = out.pixels.data();
  for (int64_t i = 0; i < w * h; ++i, dst += 3) {
    if (grey16) {
      const int v = (src[2 * i] << 8) | src[2 * i + 1];
      dst[0] = dst[1] = dst[2] = static_cast<uint8_t>(v > 255 ? 255 : v);
    } else if (channels <= 2) {  // grey, grey + alpha (dropped)
      dst[0] = dst[1] = dst[2] = src[channels * i];
    } else {  // RGB, RGBA (alpha dropped)
      std::memcpy(dst, src + channels * i, 3);
    }
  }
  return out;
}

}  // namespace

RgbImage decode_image(std::span<const uint8_t> bytes, const std::string& name) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) return decode_png(bytes, name);
  if (bytes.size() >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) return decode_jpeg(bytes, name);
  if (bytes.empty()) fail("{}: the file is empty, not an image", printable(name));
  fail("{}: not a JPEG or PNG image", printable(name));
}

RgbImage load_image(const std::string& path) {
  const std::string bytes = read_file(path, size_t{1} << 30);
  return decode_image({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, path);
}

}  // namespace la
