// RUN: dsv3-opt %s -split-input-file -dsv3-fuse-residual | FileCheck %s

// The residual add moves into the down projection's epilogue, whichever
// side of the add the projection is on.
// CHECK-LABEL: func.func @down_projection
// CHECK-NEXT: %[[H:.+]] = dsv3.linear_add %arg1, %arg2, %arg0 : (tensor<?x?x16xf32>, tensor<8x16xf32>, tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
// CHECK-NEXT: %[[G:.+]] = dsv3.linear_add %arg1, %arg2, %[[H]]
// CHECK-NEXT: return %[[G]]
func.func @down_projection(%h: tensor<?x?x8xf32>, %a: tensor<?x?x16xf32>, %w: tensor<8x16xf32>) -> tensor<?x?x8xf32> {
  %d = dsv3.linear %a, %w : (tensor<?x?x16xf32>, tensor<8x16xf32>) -> tensor<?x?x8xf32>
  %h2 = dsv3.add %h, %d : tensor<?x?x8xf32>
  %e = dsv3.linear %a, %w : (tensor<?x?x16xf32>, tensor<8x16xf32>) -> tensor<?x?x8xf32>
  %h3 = dsv3.add %e, %h2 : tensor<?x?x8xf32>
  return %h3 : tensor<?x?x8xf32>
}

// -----

// Left alone: a projection with a bias, or with another user.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: linear_add
func.func @left_alone(%h: tensor<4x8xf32>, %a: tensor<4x16xf32>, %w: tensor<8x16xf32>, %b: tensor<8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  %d = dsv3.linear %a, %w bias %b : (tensor<4x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  %h2 = dsv3.add %h, %d : tensor<4x8xf32>
  %e = dsv3.linear %a, %w : (tensor<4x16xf32>, tensor<8x16xf32>) -> tensor<4x8xf32>
  %h3 = dsv3.add %h, %e : tensor<4x8xf32>
  return %h2, %h3, %e : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}
