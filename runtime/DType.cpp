//===- DType.cpp - element types ------------------------------------------===//
#include "runtime/DType.h"

#include "runtime/Error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace dsv3rt {

size_t dtypeSize(DType d) {
  switch (d) {
  case DType::F64: case DType::I64: return 8;
  case DType::F32: case DType::I32: return 4;
  case DType::BF16: case DType::F16: return 2;
  case DType::F8E4M3: return 1;
  }
  return 0;
}

namespace {
struct Names { DType d; const char *st; const char *mf; };
constexpr Names kNames[] = {
    {DType::F64, "F64", "f64"},   {DType::F32, "F32", "f32"},
    {DType::BF16, "BF16", "bf16"}, {DType::F16, "F16", "f16"},
    {DType::F8E4M3, "F8_E4M3", "f8e4m3"}, {DType::I64, "I64", "i64"},
    {DType::I32, "I32", "i32"}};
} // namespace

const char *safetensorsName(DType d) {
  for (const Names &n : kNames)
    if (n.d == d) return n.st;
  return "?";
}
std::optional<DType> parseSafetensorsDType(const std::string &s) {
  for (const Names &n : kNames)
    if (s == n.st) return n.d;
  return std::nullopt;
}
const char *manifestName(DType d) {
  for (const Names &n : kNames)
    if (n.d == d) return n.mf;
  return "?";
}
std::optional<DType> parseManifestDType(const std::string &s) {
  for (const Names &n : kNames)
    if (s == n.mf) return n.d;
  return std::nullopt;
}

float f16ToFloat(uint16_t h) {
  int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(float(man), -24);
  else if (exp == 31)
    v = man ? NAN : INFINITY;
  else
    v = std::ldexp(float(man | 0x400), exp - 25);
  return sign ? -v : v;
}

uint16_t floatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffff) > 0x7f800000)
    return uint16_t((bits >> 16) | 0x40); // quiet NaN
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

float f8e4m3ToFloat(uint8_t b) {
  int sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 0x7;
  if (exp == 0xf && man == 0x7)
    return NAN; // e4m3fn: no infinities, S.1111.111 is NaN
  float v = exp == 0 ? std::ldexp(float(man), -9)
                     : std::ldexp(float(man | 0x8), exp - 10);
  return sign ? -v : v;
}

uint8_t floatToF8e4m3(float f) {
  // Bit arithmetic (quantizing checkpoints at load runs it for every
  // weight): round the fp32 mantissa to 3 bits, ties to even; below 2^-6
  // the subnormals m * 2^-9 (m = 8 is 2^-6, code 8, so the codes carry on).
  // Checked against a search over the 127 finite codes at every code, both
  // neighbours and every midpoint, and 2M random values.
  if (std::isnan(f))
    return 0x7f;
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint8_t sign = uint8_t((bits >> 24) & 0x80);
  float a = std::fabs(f);
  if (a >= 448.0f)
    return uint8_t(sign | 0x7e); // saturate at 448
  if (a < 0.015625f)
    return uint8_t(sign | uint8_t(std::nearbyint(a * 512.0f)));
  uint32_t ab = bits & 0x7fffffff;
  int e = int(ab >> 23) - 127;
  uint32_t man = ab & 0x7fffff, keep = man >> 20, rest = man & 0xfffff;
  if (rest > 0x80000 || (rest == 0x80000 && (keep & 1)))
    ++keep;
  if (keep == 8) {
    keep = 0;
    ++e;
  }
  uint32_t code = (uint32_t(e + 7) << 3) | keep;
  return uint8_t(sign | std::min<uint32_t>(code, 126));
}

double quantizeFp8Blocks(const double *w, int64_t rows, int64_t cols, int64_t br, int64_t bc,
                         uint8_t *codes, float *scales) {
  int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
  double worst = 0;
  for (int64_t bi = 0; bi < sr; ++bi)
    for (int64_t bj = 0; bj < sc; ++bj) {
      int64_t i0 = bi * br, i1 = std::min(rows, i0 + br);
      int64_t j0 = bj * bc, j1 = std::min(cols, j0 + bc);
      double amax = 0;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j)
          amax = std::max(amax, std::fabs(w[i * cols + j]));
      float s = amax > 0 ? float(amax / 448.0) : 1.0f;
      scales[bi * sc + bj] = s;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) {
          uint8_t q = floatToF8e4m3(float(w[i * cols + j] / double(s)));
          codes[i * cols + j] = q;
          if (amax > 0)
            worst = std::max(worst,
                             std::fabs(double(f8e4m3ToFloat(q)) * double(s) - w[i * cols + j]) /
                                 amax);
        }
    }
  return worst;
}

namespace {
/// Element i of an array that may not be aligned for T: safetensors data
/// offsets are byte offsets after a header of any length (UBSan caught the
/// direct loads).
template <typename T> T loadUnaligned(const void *data, size_t i) {
  T v;
  std::memcpy(&v, static_cast<const char *>(data) + i * sizeof(T), sizeof(T));
  return v;
}
} // namespace

double loadAsDouble(const void *data, DType d, size_t i) {
  switch (d) {
  case DType::F64: return loadUnaligned<double>(data, i);
  case DType::F32: return loadUnaligned<float>(data, i);
  case DType::BF16: return bf16ToFloat(loadUnaligned<uint16_t>(data, i));
  case DType::F16: return f16ToFloat(loadUnaligned<uint16_t>(data, i));
  case DType::F8E4M3: return f8e4m3ToFloat(static_cast<const uint8_t *>(data)[i]);
  case DType::I64: return double(loadUnaligned<int64_t>(data, i));
  case DType::I32: return double(loadUnaligned<int32_t>(data, i));
  }
  return 0;
}

} // namespace dsv3rt
