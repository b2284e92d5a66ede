//===- Dsv3Attrs.cpp - dsv3 attributes and enums ---------------------------===//
#include "dialects/Dsv3/IR/Dsv3Ops.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace mlir::dsv3;

#include "dialects/Dsv3/IR/Dsv3Enums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Dsv3/IR/Dsv3Attrs.cpp.inc"

void Dsv3Dialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/Dsv3/IR/Dsv3Attrs.cpp.inc"
      >();
}

/// YaRN's magnitude correction `get_mscale(s, m)` (SEMANTICS.md 3.4).
static double yarnMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

double RopeAttr::getCosSinScale() const {
  if (!isYarn())
    return 1.0;
  double factor = getFactor().convertToDouble();
  double mscale = getMscale().convertToDouble();
  double mscaleAllDim = getMscaleAllDim().convertToDouble();
  if (getAttentionFactor().convertToDouble() != 0.0)
    return getAttentionFactor().convertToDouble();
  if (mscale != 0.0 && mscaleAllDim != 0.0)
    return yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim);
  return yarnMscale(factor, 1.0);
}

double RopeAttr::getSoftmaxScaleMultiplier() const {
  double mscaleAllDim = getMscaleAllDim().convertToDouble();
  if (!isYarn() || mscaleAllDim == 0.0)
    return 1.0;
  double m = yarnMscale(getFactor().convertToDouble(), mscaleAllDim);
  return m * m;
}

LogicalResult RopeAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               int64_t dim, APFloat thetaF, bool interleaved,
                               APFloat factorF, int64_t originalMaxPositions,
                               APFloat betaFastF, APFloat betaSlowF,
                               APFloat mscale, APFloat mscaleAllDim,
                               APFloat attentionFactor, bool truncate) {
  double theta = thetaF.convertToDouble(), factor = factorF.convertToDouble();
  double betaFast = betaFastF.convertToDouble();
  double betaSlow = betaSlowF.convertToDouble();
  if (dim <= 0 || dim % 2 != 0)
    return emitError() << "rope dim (" << dim
                       << ") must be a positive even number";
  if (!(theta > 1.0))
    return emitError() << "rope theta (" << theta << ") must be > 1";
  if (factor < 0.0)
    return emitError() << "rope factor (" << factor
                       << ") must be >= 0 (0 = no YaRN scaling)";
  if (factor > 0.0) {
    if (originalMaxPositions <= 0)
      return emitError() << "YaRN rope needs original_max_position_embeddings "
                            "> 0, got "
                         << originalMaxPositions;
    if (!(betaFast > betaSlow) || betaSlow <= 0.0)
      return emitError() << "YaRN rope needs beta_fast (" << betaFast
                         << ") > beta_slow (" << betaSlow << ") > 0";
  }
  return success();
}
