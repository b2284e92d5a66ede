// RUN: dsv3-opt %s -split-input-file -dsv3-fuse-swiglu | FileCheck %s

// Dense MLP: the gate and up projections and SwiGLU become one op.
// CHECK-LABEL: func.func @dense
// CHECK-NEXT: %[[A:.+]] = dsv3.gated_linear %arg0, %arg1, %arg2 : (tensor<?x?x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
// CHECK-NEXT: %[[D:.+]] = dsv3.linear %[[A]], %arg3
// CHECK-NEXT: return %[[D]]
func.func @dense(%x: tensor<?x?x8xf32>, %wg: tensor<16x8xf32>, %wu: tensor<16x8xf32>, %wd: tensor<8x16xf32>) -> tensor<?x?x8xf32> {
  %g = dsv3.linear %x, %wg : (tensor<?x?x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  %u = dsv3.linear %x, %wu : (tensor<?x?x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  %a = dsv3.swiglu %g, %u : tensor<?x?x16xf32>
  %d = dsv3.linear %a, %wd : (tensor<?x?x16xf32>, tensor<8x16xf32>) -> tensor<?x?x8xf32>
  return %d : tensor<?x?x8xf32>
}

// -----

// Experts: the two grouped GEMMs and SwiGLU become one grouped op.
// CHECK-LABEL: func.func @experts
// CHECK-NEXT: %[[A:.+]] = dsv3.expert_gated_matmul %arg0, %arg1, %arg2, %arg3 : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
// CHECK-NEXT: return %[[A]]
func.func @experts(%rows: tensor<?x8xf32>, %wg: tensor<4x16x8xf32>, %wu: tensor<4x16x8xf32>, %c: tensor<4xi64>) -> tensor<?x16xf32> {
  %g = dsv3.expert_grouped_matmul %rows, %wg, %c : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
  %u = dsv3.expert_grouped_matmul %rows, %wu, %c : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
  %a = dsv3.swiglu %g, %u : tensor<?x16xf32>
  return %a : tensor<?x16xf32>
}

// -----

// Not fused: the projections read different inputs, one has a bias, or a
// projection has another user (as in a training entry's backward pass).
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: gated_linear
// CHECK: dsv3.swiglu
// CHECK: dsv3.swiglu
// CHECK: dsv3.swiglu
func.func @left_alone(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>, %w: tensor<16x8xf32>, %b: tensor<16xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>) {
  %g1 = dsv3.linear %x, %w : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %u1 = dsv3.linear %y, %w : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %a1 = dsv3.swiglu %g1, %u1 : tensor<4x16xf32>
  %g2 = dsv3.linear %x, %w bias %b : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<4x16xf32>
  %u2 = dsv3.linear %x, %w : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %a2 = dsv3.swiglu %g2, %u2 : tensor<4x16xf32>
  %g3 = dsv3.linear %x, %w : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %u3 = dsv3.linear %x, %w : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  %a3 = dsv3.swiglu %g3, %u3 : tensor<4x16xf32>
  return %a1, %a2, %a3, %g3 : tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>
}
