//===- Dsv3Dialect.td - the dsv3 dialect definition ------------*- tablegen -*-===//
//
// The dsv3 dialect: DeepSeek-V3-family model semantics on tensors.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_DIALECT_TD
#define DSV3_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"

def Dsv3_Dialect : Dialect {
  let name = "dsv3";
  let cppNamespace = "::mlir::dsv3";
  let summary = "DeepSeek-V3-family model semantics on tensors";
  let description = [{
    The `dsv3` dialect describes a DeepSeek-V3-family model (multi-head latent
    attention, DeepSeekMoE with fine-grained and shared experts, group-limited
    routing, multi-token prediction) at the level of its published equations.
    Every op carries the model's hyper-parameters as attributes and verifies
    the shapes they imply, so a malformed model is rejected with a message
    that names the rule. Weights are module-level `dsv3.param` symbols named
    by their checkpoint tensor names; `dsv3.get_param` reads one.

    Activations are ranked tensors `[batch, seq, features]` whose batch and
    sequence dimensions are usually dynamic. The exact numerics of each op are
    those of `SEMANTICS.md` (Hugging Face transformers 5.17).
  }];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    /// Registers the attributes (in Dsv3Attrs.cpp, beside their storage).
    void registerAttributes();
  }];
}

/// Base class of every dsv3 op. As Triton's `TT_Op`, it is the one place
/// where traits shared by all ops are injected.
class Dsv3_Op<string mnemonic, list<Trait> traits = []>
    : Op<Dsv3_Dialect, mnemonic, traits>;

#endif // DSV3_DIALECT_TD
