//===- DType.h - element types of artifacts and checkpoints -----*- C++ -*-===//
#ifndef DSV3_RUNTIME_DTYPE_H
#define DSV3_RUNTIME_DTYPE_H

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace dsv3rt {

enum class DType { F64, F32, BF16, F16, F8E4M3, I64, I32 };

/// Bytes per element.
size_t dtypeSize(DType d);
/// Safetensors spelling: F64, F32, BF16, F16, F8_E4M3, I64, I32.
const char *safetensorsName(DType d);
std::optional<DType> parseSafetensorsDType(const std::string &s);
/// Manifest / MLIR spelling: f64, f32, bf16, f16, f8e4m3, i64, i32.
const char *manifestName(DType d);
std::optional<DType> parseManifestDType(const std::string &s);

/// Reads element `i` of `data` (of type `d`) as a double (floats only).
double loadAsDouble(const void *data, DType d, size_t i);

inline float bf16ToFloat(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
float f16ToFloat(uint16_t h);
/// Round to nearest even (NaN stays NaN).
uint16_t floatToBf16(float f);
float f8e4m3ToFloat(uint8_t v);
/// Round to the nearest e4m3fn value (ties to even), saturating at +-448.
uint8_t floatToF8e4m3(float f);
/// Quantizes the [rows, cols] matrix `w` to e4m3 `codes` with one fp32 scale
/// per [br, bc] block (row-major [ceil(rows / br), ceil(cols / bc)]): scale
/// = amax / 448 (1 for an all-zero block), code = e4m3(w / scale), so that
/// w ~ e4m3 value x scale (DeepSeek-V3's `_scale_inv`, SEMANTICS.md 9).
/// Returns the largest |dequantized - w| relative to its block's amax.
double quantizeFp8Blocks(const double *w, int64_t rows, int64_t cols, int64_t br, int64_t bc,
                         uint8_t *codes, float *scales);

} // namespace dsv3rt

#endif // DSV3_RUNTIME_DTYPE_H
