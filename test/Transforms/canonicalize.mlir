// RUN: dsv3-opt %s -split-input-file -canonicalize | FileCheck %s

// A read of a tied copy becomes a read of the original.
dsv3.param @"lm_head.weight" head : tensor<32x8xf32>
dsv3.param @"model.layers.2.shared_head.head.weight" head tied_to @"lm_head.weight" mtp_depth 1 : tensor<32x8xf32>

// CHECK-LABEL: func.func @tied_read_goes_to_original
func.func @tied_read_goes_to_original(%h: tensor<1x4x8xf32>) -> tensor<1x4x32xf32> {
  // CHECK: %[[W:.+]] = dsv3.get_param @lm_head.weight : tensor<32x8xf32>
  // CHECK-NOT: shared_head
  // CHECK: dsv3.lm_head %{{.+}}, %[[W]]
  %w = dsv3.get_param @"model.layers.2.shared_head.head.weight" : tensor<32x8xf32>
  %l = dsv3.lm_head %h, %w : (tensor<1x4x8xf32>, tensor<32x8xf32>) -> tensor<1x4x32xf32>
  return %l : tensor<1x4x32xf32>
}

// -----

dsv3.param @"model.norm.weight" norm : tensor<8xf32>

// Every dsv3 op is pure: an unused result is erased.
// CHECK-LABEL: func.func @dead_ops_are_erased
func.func @dead_ops_are_erased(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
  // CHECK-NEXT: return %arg0
  %w = dsv3.get_param @"model.norm.weight" : tensor<8xf32>
  %n = dsv3.rms_norm %x, %w eps 1.0e-6 : tensor<1x4x8xf32>, tensor<8xf32>
  %s = dsv3.swiglu %n, %n : tensor<1x4x8xf32>
  return %x : tensor<1x4x8xf32>
}
