// RUN: dsv3-opt %s -split-input-file -dsv3-fuse-rms-norm | FileCheck %s

// The final norm before the LM head becomes the head's prologue.
// CHECK-LABEL: func.func @lm_head
// CHECK-NEXT: %[[L:.+]] = dsv3.norm_linear %arg0, %arg1, %arg2 eps {{.+}} : (tensor<?x?x8xf32>, tensor<8xf32>, tensor<32x8xf32>) -> tensor<?x?x32xf32>
// CHECK-NEXT: return %[[L]]
func.func @lm_head(%x: tensor<?x?x8xf32>, %wn: tensor<8xf32>, %w: tensor<32x8xf32>) -> tensor<?x?x32xf32> {
  %n = dsv3.rms_norm %x, %wn eps 1.0e-06 : tensor<?x?x8xf32>, tensor<8xf32>
  %l = dsv3.lm_head %n, %w : (tensor<?x?x8xf32>, tensor<32x8xf32>) -> tensor<?x?x32xf32>
  return %l : tensor<?x?x32xf32>
}

// -----

// A dense MLP after dsv3-fuse-swiglu: the post-attention norm goes into the
// gate/up GEMM; the down projection (another input) is untouched.
// CHECK-LABEL: func.func @dense_mlp
// CHECK-NEXT: %[[A:.+]] = dsv3.norm_gated_linear %arg0, %arg1, %arg2, %arg3 eps 1.000000e-05 : (tensor<?x?x8xf32>, tensor<8xf32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
// CHECK-NEXT: %[[D:.+]] = dsv3.linear_add %[[A]], %arg4, %arg0
// CHECK-NEXT: return %[[D]]
func.func @dense_mlp(%x: tensor<?x?x8xf32>, %wn: tensor<8xf32>, %wg: tensor<16x8xf32>, %wu: tensor<16x8xf32>, %wd: tensor<8x16xf32>) -> tensor<?x?x8xf32> {
  %n = dsv3.rms_norm %x, %wn eps 1.0e-05 : tensor<?x?x8xf32>, tensor<8xf32>
  %a = dsv3.gated_linear %n, %wg, %wu : (tensor<?x?x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  %d = dsv3.linear_add %a, %wd, %x : (tensor<?x?x16xf32>, tensor<8x16xf32>, tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  return %d : tensor<?x?x8xf32>
}

// -----

// A plain projection without bias takes the norm too.
// CHECK-LABEL: func.func @linear
// CHECK-NEXT: dsv3.norm_linear %arg0, %arg1, %arg2 eps
func.func @linear(%x: tensor<4x8xf32>, %wn: tensor<8xf32>, %w: tensor<16x8xf32>) -> tensor<4x16xf32> {
  %n = dsv3.rms_norm %x, %wn eps 1.0e-06 : tensor<4x8xf32>, tensor<8xf32>
  %y = dsv3.linear %n, %w : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// -----

// Left alone: a norm with a second user (a MoE layer's norm feeds the
// router too; a training entry's backward reads it), and a projection with
// a bias.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: norm_linear
// CHECK-NOT: norm_gated_linear
// CHECK: dsv3.rms_norm
// CHECK: dsv3.gated_linear
// CHECK: dsv3.linear
// CHECK: dsv3.rms_norm
// CHECK: dsv3.linear {{.+}} bias
func.func @left_alone(%x: tensor<4x8xf32>, %wn: tensor<8xf32>, %wg: tensor<16x8xf32>, %wu: tensor<16x8xf32>, %b: tensor<16xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>) {
  %n = dsv3.rms_norm %x, %wn eps 1.0e-06 : tensor<4x8xf32>, tensor<8xf32>
  %a = dsv3.gated_linear %n, %wg, %wu : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %r = dsv3.linear %n, %wg : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %m = dsv3.rms_norm %x, %wn eps 1.0e-06 : tensor<4x8xf32>, tensor<8xf32>
  %c = dsv3.linear %m, %wg bias %b : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<4x16xf32>
  return %a, %r, %c : tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>
}
