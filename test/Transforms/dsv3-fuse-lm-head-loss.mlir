// RUN: dsv3-opt %s -split-input-file -dsv3-fuse-lm-head-loss | FileCheck %s

// The main head's and an MTP depth's losses each take their lm_head in;
// the attributes carry over.
// CHECK-LABEL: func.func @losses
// CHECK-NOT: dsv3.lm_head %
// CHECK: %[[A:.+]] = dsv3.lm_head_cross_entropy %arg0, %arg2, %arg3 shift 1 scale 1.000000e+00 : (tensor<?x?x16xf32>, tensor<32x16xf32>, tensor<?x?xi64>) -> tensor<f32>
// CHECK: %[[B:.+]] = dsv3.lm_head_cross_entropy %arg1, %arg2, %arg3 shift 2 scale 3.000000e-01 {ignore_index = 0 : i64}
// CHECK-NOT: dsv3.cross_entropy
func.func @losses(%h: tensor<?x?x16xf32>, %m: tensor<?x?x16xf32>, %w: tensor<32x16xf32>, %ids: tensor<?x?xi64>) -> (tensor<f32>, tensor<f32>) {
  %l = dsv3.lm_head %h, %w : (tensor<?x?x16xf32>, tensor<32x16xf32>) -> tensor<?x?x32xf32>
  %a = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<?x?x32xf32>, tensor<?x?xi64>) -> tensor<f32>
  %lm = dsv3.lm_head %m, %w : (tensor<?x?x16xf32>, tensor<32x16xf32>) -> tensor<?x?x32xf32>
  %b = dsv3.cross_entropy %lm, %ids shift 2 scale 0.3 {ignore_index = 0 : i64} : (tensor<?x?x32xf32>, tensor<?x?xi64>) -> tensor<f32>
  return %a, %b : tensor<f32>, tensor<f32>
}

// -----

// Left alone: logits that something else reads (the forward entry returns
// them) stay, and so does their loss.
// CHECK-LABEL: func.func @logits_read_twice
// CHECK: dsv3.lm_head %
// CHECK: dsv3.cross_entropy
// CHECK-NOT: lm_head_cross_entropy
func.func @logits_read_twice(%h: tensor<?x?x16xf32>, %w: tensor<32x16xf32>, %ids: tensor<?x?xi64>) -> (tensor<f32>, tensor<?x?x32xf32>) {
  %l = dsv3.lm_head %h, %w : (tensor<?x?x16xf32>, tensor<32x16xf32>) -> tensor<?x?x32xf32>
  %a = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<?x?x32xf32>, tensor<?x?xi64>) -> tensor<f32>
  return %a, %l : tensor<f32>, tensor<?x?x32xf32>
}
