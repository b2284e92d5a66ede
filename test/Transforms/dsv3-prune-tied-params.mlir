// RUN: dsv3-opt %s -split-input-file -canonicalize -dsv3-prune-tied-params | FileCheck %s
// RUN: dsv3-opt %s -split-input-file -dsv3-prune-tied-params | FileCheck %s --check-prefix=NOCANON

// After canonicalization nothing reads the tied copy, so it is erased; the
// original stays.
// CHECK: dsv3.param @lm_head.weight
// CHECK-NOT: shared_head.head
// NOCANON: dsv3.param @lm_head.weight
// NOCANON: dsv3.param @model.layers.2.shared_head.head.weight head tied_to @lm_head.weight
dsv3.param @"lm_head.weight" head : tensor<32x8xf32>
dsv3.param @"model.layers.2.shared_head.head.weight" head tied_to @"lm_head.weight" mtp_depth 1 : tensor<32x8xf32>

func.func @f(%h: tensor<1x4x8xf32>) -> tensor<1x4x32xf32> {
  %w = dsv3.get_param @"model.layers.2.shared_head.head.weight" : tensor<32x8xf32>
  %l = dsv3.lm_head %h, %w : (tensor<1x4x8xf32>, tensor<32x8xf32>) -> tensor<1x4x32xf32>
  return %l : tensor<1x4x32xf32>
}

// -----

// A tied copy nobody reads is erased even without canonicalization; an
// unread original parameter is kept.
// CHECK: dsv3.param @model.embed_tokens.weight
// CHECK-NOT: dsv3.param @lm_head.weight
dsv3.param @"model.embed_tokens.weight" embedding : tensor<32x8xf32>
dsv3.param @"lm_head.weight" head tied_to @"model.embed_tokens.weight" : tensor<32x8xf32>
