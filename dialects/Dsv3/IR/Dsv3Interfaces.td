//===- Dsv3Interfaces.td - dsv3 op interfaces -------------------*- tablegen -*-===//
#ifndef DSV3_INTERFACES_TD
#define DSV3_INTERFACES_TD

include "mlir/IR/OpBase.td"

def Dsv3_DifferentiableOpInterface : OpInterface<"DifferentiableOpInterface"> {
  let cppNamespace = "::mlir::dsv3";
  let description = [{
    The gradient rule of a dsv3 op, used by `dsv3-autodiff`. Given the
    cotangents of the op's floating-point results (a null Value for a result
    that does not reach the loss), the rule builds the ops computing the
    gradients of its differentiable operands. The default rule emits one
    `dsv3.vjp` of the op (a vector-Jacobian-product kernel named after it);
    ops whose gradient is plain dataflow (`dsv3.add`) override it.
  }];
  let methods = [
    InterfaceMethod<
      "The indices of the operands that receive a gradient (default: every "
      "floating-point tensor operand).",
      "::llvm::SmallVector<unsigned>", "getDifferentiableOperands", (ins), [{}],
      [{
        ::llvm::SmallVector<unsigned> out;
        for (auto [i, v] : ::llvm::enumerate($_op->getOperands()))
          if (auto t = ::llvm::dyn_cast<::mlir::RankedTensorType>(v.getType());
              t && ::llvm::isa<::mlir::FloatType>(t.getElementType()))
            out.push_back(i);
        return out;
      }]>,
    InterfaceMethod<
      "Builds the gradient of every differentiable operand from the "
      "cotangents of the floating-point results; appends one Value (null "
      "when zero) per differentiable operand to `operandGrads`.",
      "::llvm::LogicalResult", "buildGradient",
      (ins "::mlir::OpBuilder &":$builder, "::mlir::ValueRange":$cotangents,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads),
      [{}],
      [{
        return ::mlir::dsv3::buildVjpGradient($_op, builder, cotangents,
                                             operandGrads);
      }]>
  ];
}

#endif // DSV3_INTERFACES_TD
