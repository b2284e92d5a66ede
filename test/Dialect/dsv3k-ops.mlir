// Round trip of the dsv3k ops (custom, generic, bytecode).
// RUN: dsv3-opt %s | dsv3-opt | FileCheck %s
// RUN: dsv3-opt %s --mlir-print-op-generic | dsv3-opt | FileCheck %s
// RUN: dsv3-opt %s --emit-bytecode | dsv3-opt | FileCheck %s

dsv3.param @"model.norm.weight" norm : tensor<64xf32>

// CHECK-LABEL: func.func @program
func.func @program(%x: memref<?x?x64xf32>, %past: i64) -> memref<?x?x64xf32> {
  // CHECK: %[[W:.+]] = dsv3k.param @model.norm.weight : memref<64xf32>
  %w = dsv3k.param @"model.norm.weight" : memref<64xf32>
  // CHECK: %[[Y:.+]] = dsv3k.alloc max_shape [4, 256, 64] {bytes = 262144 : i64, offset = 0 : i64} : memref<?x?x64xf32>
  %y = dsv3k.alloc max_shape [4, 256, 64] {bytes = 262144 : i64, offset = 0 : i64} : memref<?x?x64xf32>
  // CHECK: dsv3k.launch "rms_norm" ins(%{{.+}}, %[[W]] : memref<?x?x64xf32>, memref<64xf32>) outs(%[[Y]] : memref<?x?x64xf32>) params {epsilon = 9.9999999999999995E-7 : f64}
  dsv3k.launch "rms_norm" ins(%x, %w : memref<?x?x64xf32>, memref<64xf32>) outs(%y : memref<?x?x64xf32>) params {epsilon = 1.0e-6 : f64}
  // Scalars are launch inputs too; an output may also be an input (in place).
  // CHECK: dsv3k.launch "scale" ins(%[[Y]], %{{.+}} : memref<?x?x64xf32>, i64) outs(%[[Y]] : memref<?x?x64xf32>) params {}
  dsv3k.launch "scale" ins(%y, %past : memref<?x?x64xf32>, i64) outs(%y : memref<?x?x64xf32>) params {}
  return %y : memref<?x?x64xf32>
}
