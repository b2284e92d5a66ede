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
  // The 127 finite non-negative codes are increasing in value: binary search
  // for the nearest, ties to the even code (its last mantissa bit 0).
  static const std::vector<float> values = [] {
    std::vector<float> v(127);
    for (int c = 0; c < 127; ++c)
      v[size_t(c)] = f8e4m3ToFloat(uint8_t(c));
    return v;
  }();
  if (std::isnan(f))
    return 0x7f;
  uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= values.back())
    return uint8_t(sign | 126); // saturate at 448
  size_t hi = size_t(std::upper_bound(values.begin(), values.end(), a) - values.begin());
  size_t lo = hi - 1; // values[lo] <= a < values[hi]
  float dl = a - values[lo], dh = values[hi] - a;
  size_t code = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
  return uint8_t(sign | code);
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
