//===- Dsv3KOps.td - the dsv3k kernel-level dialect -------------*- tablegen -*-===//
//
// dsv3k: the program below dsv3. Values are buffers (builtin memrefs);
// every op of the program is an allocation, a parameter read, or a kernel
// launch. A launch names a kernel, reads its input buffers and writes its
// output buffers; nothing happens between launches. The memory plan
// assigns every allocation an offset in one arena per entry function.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3K_OPS_TD
#define DSV3K_OPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Dsv3K_Dialect : Dialect {
  let name = "dsv3k";
  let cppNamespace = "::mlir::dsv3k";
  let summary = "kernel launches over planned buffers";
  let description = [{
    The kernel-level IR of dsv3, produced by `dsv3-lower-to-kernels` and
    planned by `dsv3k-plan-memory`; the artifact writer turns it into the
    manifest the runtime executes. Buffers are memrefs whose dynamic
    dimensions (batch, sequence, routed rows) are resolved by the runtime;
    each allocation records the shape it has at the compile-time maxima
    (`max_shape`) and, once planned, its `offset` and `bytes` in the arena.
  }];
}

class Dsv3K_Op<string mnemonic, list<Trait> traits = []>
    : Op<Dsv3K_Dialect, mnemonic, traits>;

def Dsv3K_AllocOp : Dsv3K_Op<"alloc"> {
  let summary = "a buffer in the entry function's arena";
  let description = [{
    `max_shape` is the buffer's shape at the compile-time maxima (batch,
    sequence); the memory plan adds `offset` and `bytes` (256-byte aligned).

    ```mlir
    %0 = dsv3k.alloc max_shape [4, 256, 64] {bytes = 262144 : i64, offset = 0 : i64}
        : memref<?x?x64xf32>
    ```
  }];
  let arguments = (ins DenseI64ArrayAttr:$max_shape,
                       OptionalAttr<I64Attr>:$offset,
                       OptionalAttr<I64Attr>:$bytes);
  let results = (outs AnyMemRef:$buffer);
  let assemblyFormat = "`max_shape` $max_shape attr-dict `:` type($buffer)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Bytes at the maxima, before alignment.
    int64_t getMaxBytes();
  }];
}

def Dsv3K_ParamOp : Dsv3K_Op<"param", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "the storage of a model weight";
  let description = [{
    The buffer holding the `dsv3.param` named `param` (bound by the runtime
    to the checkpoint tensor of that name).

    ```mlir
    %w = dsv3k.param @model.norm.weight : memref<64xf32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$param);
  let results = (outs AnyMemRef:$buffer);
  let assemblyFormat = "$param attr-dict `:` type($buffer)";
}

def Dsv3K_LaunchOp : Dsv3K_Op<"launch", [AttrSizedOperandSegments]> {
  let summary = "one kernel launch";
  let description = [{
    Runs kernel `kernel` on `inputs` (buffers and scalars), writing
    `outputs` (buffers; an output may also be an input, updated in place, as
    the latent cache of decode is). `params` holds the kernel's
    compile-time parameters (model widths and hyper-parameters); the runtime
    derives the dynamic extents from the input buffers.

    ```mlir
    dsv3k.launch "rms_norm" ins(%x, %w : memref<?x?x64xf32>, memref<64xf32>)
        outs(%y : memref<?x?x64xf32>) params {epsilon = 1.0e-06 : f64}
    ```
  }];
  let arguments = (ins StrAttr:$kernel, Variadic<AnyType>:$inputs,
                       Variadic<AnyMemRef>:$outputs, DictionaryAttr:$params);
  let assemblyFormat = [{
    $kernel `ins` `(` $inputs `:` type($inputs) `)`
    `outs` `(` $outputs `:` type($outputs) `)` `params` $params attr-dict
  }];
  let hasVerifier = 1;
}

#endif // DSV3K_OPS_TD
