// RUN: dsv3-opt %s -split-input-file -dsv3-save-attention-state | FileCheck %s

// The forward whose vjp reads the same primals returns its attention output
// ([B, T, heads x v_head_dim]) and log-sum-exp ([B, heads, T]); the vjp
// takes them after its primals and carries save_for_backward.
// CHECK-LABEL: func.func @gradients
// CHECK: %[[Y:[0-9]+]], %[[S:saved]]:2 = dsv3.latent_attention %arg0 q_a(%arg1, %arg2) q(%arg3) kv_a(%arg4, %arg5) kv_b(%arg6) o(%arg7) {{{.*}}save_for_backward{{.*}}} : ({{.*}}) -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>, tensor<?x4x?xf32>)
// CHECK: dsv3.vjp "latent_attention"(%arg0, %arg1, %arg2, %arg3, %arg4, %arg5, %arg6, %arg7, %[[S]]#0, %[[S]]#1) cotangents(%arg8) grads [0, 7] params {{{.*}}save_for_backward{{.*}}}
// CHECK-SAME: -> (tensor<?x?x64xf32>, tensor<64x64xf32>)
func.func @gradients(%x: tensor<?x?x64xf32>, %qa: tensor<32x64xf32>, %qan: tensor<32xf32>, %qb: tensor<96x32xf32>, %kva: tensor<40x64xf32>, %kvan: tensor<32xf32>, %kvb: tensor<128x32xf32>, %o: tensor<64x64xf32>, %dy: tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>, tensor<64x64xf32>) {
  %y = dsv3.latent_attention %x q_a(%qa, %qan) q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) {kv_lora_rank = 32 : i64, num_heads = 4 : i64, q_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, rope = #dsv3.rope<dim = 8, theta = 1.000000e+04>, softmax_scale = 0.2 : f64, v_head_dim = 16 : i64} : (tensor<?x?x64xf32>, tensor<32x64xf32>, tensor<32xf32>, tensor<96x32xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> tensor<?x?x64xf32>
  %g:2 = dsv3.vjp "latent_attention"(%x, %qa, %qan, %qb, %kva, %kvan, %kvb, %o) cotangents(%dy) grads [0, 7] params {kv_lora_rank = 32 : i64, num_heads = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0>, q_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, rope = #dsv3.rope<dim = 8, theta = 1.000000e+04>, softmax_scale = 0.2 : f64, v_head_dim = 16 : i64} : (tensor<?x?x64xf32>, tensor<32x64xf32>, tensor<32xf32>, tensor<96x32xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>, tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<64x64xf32>)
  return %y, %g#0, %g#1 : tensor<?x?x64xf32>, tensor<?x?x64xf32>, tensor<64x64xf32>
}

// -----

// Left alone: an attention without a vjp (an inference or loss-only entry).
// CHECK-LABEL: func.func @forward_only
// CHECK: %{{[0-9]+}} = dsv3.latent_attention
// CHECK-NOT: save_for_backward
func.func @forward_only(%x: tensor<2x8x64xf32>, %qb: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvan: tensor<32xf32>, %kvb: tensor<128x32xf32>, %o: tensor<64x64xf32>) -> tensor<2x8x64xf32> {
  %y = dsv3.latent_attention %x q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) {kv_lora_rank = 32 : i64, num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, rope = #dsv3.rope<dim = 8, theta = 1.000000e+04>, softmax_scale = 0.2 : f64, v_head_dim = 16 : i64} : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> tensor<2x8x64xf32>
  return %y : tensor<2x8x64xf32>
}

// -----

// Left alone: a vjp whose forward is not in its block (no latent_attention
// reads its primals here).
// CHECK-LABEL: func.func @vjp_only
// CHECK: dsv3.vjp "latent_attention"(%arg0, %arg1, %arg2, %arg3, %arg4, %arg5, %arg6, %arg7) cotangents(%arg8)
// CHECK-NOT: save_for_backward
func.func @vjp_only(%x: tensor<?x?x64xf32>, %qa: tensor<32x64xf32>, %qan: tensor<32xf32>, %qb: tensor<96x32xf32>, %kva: tensor<40x64xf32>, %kvan: tensor<32xf32>, %kvb: tensor<128x32xf32>, %o: tensor<64x64xf32>, %dy: tensor<?x?x64xf32>) -> tensor<?x?x64xf32> {
  %g = dsv3.vjp "latent_attention"(%x, %qa, %qan, %qb, %kva, %kvan, %kvb, %o) cotangents(%dy) grads [0] params {kv_lora_rank = 32 : i64, num_heads = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0>, q_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, rope = #dsv3.rope<dim = 8, theta = 1.000000e+04>, softmax_scale = 0.2 : f64, v_head_dim = 16 : i64} : (tensor<?x?x64xf32>, tensor<32x64xf32>, tensor<32xf32>, tensor<96x32xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>, tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
  return %g : tensor<?x?x64xf32>
}
