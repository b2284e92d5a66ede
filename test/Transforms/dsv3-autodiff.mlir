// RUN: dsv3-opt %s -split-input-file -dsv3-autodiff -verify-diagnostics | FileCheck %s
// One case per gradient rule: each builds the gradients entry of a tiny
// loss and checks the backward ops the rule emits.

// rms_norm, lm_head and cross_entropy: the default rule (one dsv3.vjp of
// the op, over its primals and the cotangent), seeded with d(loss) = 1.
dsv3.param @"w" norm : tensor<8xf32>
dsv3.param @"head" head : tensor<16x8xf32>
// CHECK-LABEL: func.func @gradients(%arg0: tensor<?x?xi64>, %arg1: tensor<?x?x8xf32>) -> (tensor<f32>, tensor<8xf32>, tensor<16x8xf32>)
// CHECK-SAME: dsv3.entry = "gradients", dsv3.grad_params = [@w, @head]
// CHECK: %[[ONE:.+]] = dsv3.fill 1.000000e+00 : tensor<f32>
// CHECK: %[[DL:.+]] = dsv3.vjp "cross_entropy"(%{{.+}}, %arg0) cotangents(%[[ONE]]) grads [0]
// CHECK: %[[DN:.+]]:2 = dsv3.vjp "lm_head"(%{{.+}}, %{{.+}}) cotangents(%[[DL]]) grads [0, 1]
// CHECK: %[[DW:.+]]:2 = dsv3.vjp "rms_norm"(%arg1, %{{.+}}) cotangents(%[[DN]]#0) grads [0, 1] params {epsilon = 9.9999999999999995E-7 : f64}
// CHECK: return %{{.+}}, %[[DW]]#1, %[[DN]]#1 : tensor<f32>, tensor<8xf32>, tensor<16x8xf32>
func.func @loss(%ids: tensor<?x?xi64>, %x: tensor<?x?x8xf32>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %w = dsv3.get_param @"w" : tensor<8xf32>
  %n = dsv3.rms_norm %x, %w eps 1.0e-6 : tensor<?x?x8xf32>, tensor<8xf32>
  %h = dsv3.get_param @"head" : tensor<16x8xf32>
  %l = dsv3.lm_head %n, %h : (tensor<?x?x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<?x?x16xf32>, tensor<?x?xi64>) -> tensor<f32>
  return %c : tensor<f32>
}

// -----

// add passes its cotangent to both operands; a value used twice (the
// residual stream) gets the sum of its gradients; embedding's ids get none.
dsv3.param @"emb" embedding : tensor<16x8xf32>
dsv3.param @"head" head : tensor<16x8xf32>
// CHECK-LABEL: func.func @gradients
// CHECK: %[[DL:.+]] = dsv3.vjp "cross_entropy"
// CHECK: %[[DH:.+]]:2 = dsv3.vjp "lm_head"(%[[R:.+]], %{{.+}}) cotangents(%[[DL]])
// CHECK: %[[DS:.+]]:2 = dsv3.vjp "swiglu"(%[[E:.+]], %[[E]]) cotangents(%[[DH]]#0) grads [0, 1]
// CHECK: %[[S1:.+]] = dsv3.add %[[DH]]#0, %[[DS]]#0
// CHECK: %[[S2:.+]] = dsv3.add %[[S1]], %[[DS]]#1
// CHECK: %[[DE:.+]] = dsv3.vjp "embedding"(%arg0, %{{.+}}) cotangents(%[[S2]]) grads [1]
// CHECK: return %{{.+}}, %[[DE]], %[[DH]]#1
func.func @loss(%ids: tensor<?x?xi64>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %t = dsv3.get_param @"emb" : tensor<16x8xf32>
  %e = dsv3.embedding %ids, %t : (tensor<?x?xi64>, tensor<16x8xf32>) -> tensor<?x?x8xf32>
  %s = dsv3.swiglu %e, %e : tensor<?x?x8xf32>
  %r = dsv3.add %e, %s : tensor<?x?x8xf32>
  %h = dsv3.get_param @"head" : tensor<16x8xf32>
  %l = dsv3.lm_head %r, %h : (tensor<?x?x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<?x?x16xf32>, tensor<?x?xi64>) -> tensor<f32>
  return %c : tensor<f32>
}

// -----

// The MoE: combine differentiates expert outputs and routing weights (not
// the slots); grouped matmuls their rows and stacked weights (not the
// counts); dispatch its hidden state (not the indices); the router its
// hidden state and gate weight, never the correction bias, which is not a
// trainable parameter and gets no result.
dsv3.param @"gate" router : tensor<4x8xf32>
dsv3.param @"bias" router_bias : tensor<4xf32>
dsv3.param @"up" routed_experts stacked_from "up.{e}" : tensor<4x8x8xf32>
dsv3.param @"head" head : tensor<16x8xf32>
// CHECK-LABEL: func.func @gradients
// CHECK-SAME: -> (tensor<f32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<16x8xf32>)
// CHECK-SAME: dsv3.grad_params = [@gate, @up, @head]
// CHECK: %[[DC:.+]]:2 = dsv3.vjp "moe_combine"(%{{.+}}, %{{.+}}, %{{.+}}) cotangents(%{{.+}}) grads [0, 2]
// CHECK: %[[DG:.+]]:2 = dsv3.vjp "expert_grouped_matmul"(%{{.+}}, %{{.+}}, %{{.+}}) cotangents(%[[DC]]#0) grads [0, 1]
// CHECK: %[[DD:.+]] = dsv3.vjp "moe_dispatch"(%arg1, %{{.+}}) cotangents(%[[DG]]#0) grads [0] params {num_experts = 4 : i64}
// CHECK: %[[DR:.+]]:2 = dsv3.vjp "moe_route"(%arg1, %{{.+}}, %{{.+}}) cotangents(%[[DC]]#1) grads [0, 1]
// CHECK-NOT: dsv3.vjp
// CHECK: return %{{.+}}, %[[DR]]#1, %[[DG]]#1, %{{.+}}
func.func @loss(%ids: tensor<?x?xi64>, %x: tensor<?x?x8xf32>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %g = dsv3.get_param @"gate" : tensor<4x8xf32>
  %b = dsv3.get_param @"bias" : tensor<4xf32>
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %g bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, norm_topk_prob, routed_scaling_factor = 2.5 : f64}
      : (tensor<?x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> (tensor<?x?x2xi64>, tensor<?x?x2xf32>)
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 4 : (tensor<?x?x8xf32>, tensor<?x?x2xi64>) -> (tensor<?x8xf32>, tensor<4xi64>, tensor<?xi64>)
  %up = dsv3.get_param @"up" : tensor<4x8x8xf32>
  %y = dsv3.expert_grouped_matmul %rows, %up, %counts : (tensor<?x8xf32>, tensor<4x8x8xf32>, tensor<4xi64>) -> tensor<?x8xf32>
  %o = dsv3.moe_combine %y, %slots, %w : (tensor<?x8xf32>, tensor<?xi64>, tensor<?x?x2xf32>) -> tensor<?x?x8xf32>
  %h = dsv3.get_param @"head" : tensor<16x8xf32>
  %l = dsv3.lm_head %o, %h : (tensor<?x?x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<?x?x16xf32>, tensor<?x?xi64>) -> tensor<f32>
  return %c : tensor<f32>
}

// -----

// latent_attention (every weight, optional q_a present), mtp, rope and
// linear with a bias use the default rule over all their float operands.
dsv3.param @"qa" attention : tensor<16x32xf32>
dsv3.param @"qan" norm : tensor<16xf32>
dsv3.param @"qb" attention : tensor<48x16xf32>
dsv3.param @"kva" attention : tensor<12x32xf32>
dsv3.param @"kvan" norm : tensor<8xf32>
dsv3.param @"kvb" attention : tensor<72x8xf32>
dsv3.param @"o" attention : tensor<32x32xf32>
dsv3.param @"eh" mtp_projection : tensor<32x64xf32>
dsv3.param @"n" norm : tensor<32xf32>
dsv3.param @"lw" dense_mlp : tensor<32x32xf32>
dsv3.param @"lb" dense_mlp : tensor<32xf32>
// CHECK-LABEL: func.func @gradients
// CHECK: dsv3.vjp "linear"(%{{.+}}, %{{.+}}, %{{.+}}) cotangents(%{{.+}}) grads [0, 1, 2]
// CHECK: dsv3.vjp "mtp"(%{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}) cotangents(%{{.+}}) grads [0, 1, 2, 3, 4] params {depth = 1 : i64, epsilon = 9.9999999999999995E-7 : f64}
// CHECK: dsv3.vjp "rope"(%{{.+}}, %arg1) cotangents(%{{.+}}) grads [0]
// CHECK: dsv3.vjp "latent_attention"(%arg0, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}) cotangents(%{{.+}}) grads [0, 1, 2, 3, 4, 5, 6, 7] params {{.*}}operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0>
func.func @loss(%x: tensor<1x4x32xf32>, %pos: tensor<1x4xi64>, %ids: tensor<1x4xi64>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %qa = dsv3.get_param @"qa" : tensor<16x32xf32>
  %qan = dsv3.get_param @"qan" : tensor<16xf32>
  %qb = dsv3.get_param @"qb" : tensor<48x16xf32>
  %kva = dsv3.get_param @"kva" : tensor<12x32xf32>
  %kvan = dsv3.get_param @"kvan" : tensor<8xf32>
  %kvb = dsv3.get_param @"kvb" : tensor<72x8xf32>
  %o = dsv3.get_param @"o" : tensor<32x32xf32>
  %a = dsv3.latent_attention %x q_a(%qa, %qan) q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 2 : i64, q_lora_rank = 16 : i64, kv_lora_rank = 8 : i64, qk_nope_head_dim = 20 : i64,
       qk_rope_head_dim = 4 : i64, v_head_dim = 16 : i64, softmax_scale = 0.2 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>}
      : (tensor<1x4x32xf32>, tensor<16x32xf32>, tensor<16xf32>, tensor<48x16xf32>, tensor<12x32xf32>, tensor<8xf32>, tensor<72x8xf32>, tensor<32x32xf32>) -> tensor<1x4x32xf32>
  %r = dsv3.rope %a, %pos <dim = 32, theta = 10000.0> : tensor<1x4x32xf32>, tensor<1x4xi64>
  %n = dsv3.get_param @"n" : tensor<32xf32>
  %eh = dsv3.get_param @"eh" : tensor<32x64xf32>
  %m = dsv3.mtp depth 1 %r, %x, %n, %n, %eh eps 1.0e-6 : (tensor<1x4x32xf32>, tensor<1x4x32xf32>, tensor<32xf32>, tensor<32xf32>, tensor<32x64xf32>) -> tensor<1x3x32xf32>
  %lw = dsv3.get_param @"lw" : tensor<32x32xf32>
  %lb = dsv3.get_param @"lb" : tensor<32xf32>
  %y = dsv3.linear %m, %lw bias %lb : (tensor<1x3x32xf32>, tensor<32x32xf32>, tensor<32xf32>) -> tensor<1x3x32xf32>
  %c = dsv3.cross_entropy %y, %ids shift 1 scale 1.0 : (tensor<1x3x32xf32>, tensor<1x4xi64>) -> tensor<f32>
  return %c : tensor<f32>
}

// -----

// A parameter the loss never reads gets a zero gradient.
dsv3.param @"unused" norm : tensor<8xf32>
// CHECK-LABEL: func.func @gradients
// CHECK: %[[Z:.+]] = dsv3.fill 0.000000e+00 : tensor<8xf32>
// CHECK: return %{{.+}}, %[[Z]] : tensor<f32>, tensor<8xf32>
func.func @loss(%l: tensor<1x3x16xf32>, %ids: tensor<1x4xi64>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x3x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return %c : tensor<f32>
}

// -----

// An op without a gradient rule on the path to the loss is an error.
dsv3.param @"kva" attention : tensor<12x32xf32>
dsv3.param @"kvan" norm : tensor<8xf32>
dsv3.param @"kvb" attention : tensor<72x8xf32>
dsv3.param @"q" attention : tensor<48x32xf32>
dsv3.param @"o" attention : tensor<32x32xf32>
func.func @loss(%x: tensor<1x1x32xf32>, %cache: tensor<1x8x12xf32>, %past: tensor<1xi64>, %ids: tensor<1x2xi64>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %q = dsv3.get_param @"q" : tensor<48x32xf32>
  %kva = dsv3.get_param @"kva" : tensor<12x32xf32>
  %kvan = dsv3.get_param @"kvan" : tensor<8xf32>
  %kvb = dsv3.get_param @"kvb" : tensor<72x8xf32>
  %o = dsv3.get_param @"o" : tensor<32x32xf32>
  // expected-error @+1 {{'dsv3.latent_attention_decode' op has no gradient rule, but its result reaches the loss}}
  %a, %c = dsv3.latent_attention_decode %x cache(%cache, %past) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 2 : i64, kv_lora_rank = 8 : i64, qk_nope_head_dim = 20 : i64,
       qk_rope_head_dim = 4 : i64, v_head_dim = 16 : i64, softmax_scale = 0.2 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>}
      : (tensor<1x1x32xf32>, tensor<1x8x12xf32>, tensor<1xi64>, tensor<48x32xf32>, tensor<12x32xf32>, tensor<8xf32>, tensor<72x8xf32>, tensor<32x32xf32>) -> (tensor<1x1x32xf32>, tensor<1x8x12xf32>)
  %l = dsv3.lm_head %a, %o : (tensor<1x1x32xf32>, tensor<32x32xf32>) -> tensor<1x1x32xf32>
  %ce = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x1x32xf32>, tensor<1x2xi64>) -> tensor<f32>
  return %ce : tensor<f32>
}

// -----

// expected-error @+1 {{dsv3-autodiff needs a function marked dsv3.entry = "loss"}}
module {
  func.func @f() {
    return
  }
}
