// RUN: dsv3-opt %s -dsv3-print-param-stats='json=true' -o /dev/null 2>&1 | FileCheck %s
// RUN: dsv3-opt %s -dsv3-print-param-stats -o /dev/null 2>&1 | FileCheck %s --check-prefix=TABLE

// Routed experts count top_k / n_experts of their elements as activated (the
// top_k comes from the router that feeds the grouped matmul); the correction
// bias is a buffer; tied copies are not parameters.
// CHECK: "activated": 680,
// CHECK: "buffers": 4,
// CHECK: "bytes": 3760,
// CHECK: "checkpoint_tensors": 9,
// CHECK: "head": {
// CHECK-NEXT: "activated": 0,
// CHECK-NEXT: "total": 0
// CHECK: "routed experts": {
// CHECK-NEXT: "activated": 256,
// CHECK-NEXT: "total": 512
// CHECK: "total": 936
// TABLE: routed experts 512 512 256 256
// TABLE: main model 936 936 680 680
// TABLE: buffers (router correction bias): 4
// TABLE: checkpoint tensors bound: 9; weight bytes: 3760

dsv3.param @"model.embed_tokens.weight" embedding : tensor<32x8xf32>
dsv3.param @"lm_head.weight" head tied_to @"model.embed_tokens.weight" : tensor<32x8xf32>
dsv3.param @"model.layers.0.mlp.gate.weight" router : tensor<4x8xf32>
dsv3.param @"model.layers.0.mlp.gate.e_score_correction_bias" router_bias : tensor<4xf32>
dsv3.param @"model.layers.0.mlp.experts.up_proj.weight" routed_experts stacked_from "model.layers.0.mlp.experts.{e}.up_proj.weight" : tensor<4x16x8xf32>
dsv3.param @"model.layers.0.mlp.shared_experts.up_proj.weight" shared_experts : tensor<16x8xf32>
dsv3.param @"model.norm.weight" norm : tensor<8xf32>

func.func @f(%x: tensor<1x4x8xf32>) -> tensor<8x16xf32> {
  %g = dsv3.get_param @"model.layers.0.mlp.gate.weight" : tensor<4x8xf32>
  %b = dsv3.get_param @"model.layers.0.mlp.gate.e_score_correction_bias" : tensor<4xf32>
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %g bias %b {num_experts_per_tok = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob, routed_scaling_factor = 1.0 : f64}
      : (tensor<1x4x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> (tensor<1x4x2xi64>, tensor<1x4x2xf32>)
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 4 : (tensor<1x4x8xf32>, tensor<1x4x2xi64>) -> (tensor<8x8xf32>, tensor<4xi64>, tensor<8xi64>)
  %up = dsv3.get_param @"model.layers.0.mlp.experts.up_proj.weight" : tensor<4x16x8xf32>
  %y = dsv3.expert_grouped_matmul %rows, %up, %counts : (tensor<8x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<8x16xf32>
  return %y : tensor<8x16xf32>
}
