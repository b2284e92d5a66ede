// Round trip of every dsv3 op: custom form, generic form and bytecode all
// parse back to the same custom form.
// RUN: dsv3-opt %s | dsv3-opt | FileCheck %s
// RUN: dsv3-opt %s --mlir-print-op-generic | dsv3-opt | FileCheck %s
// RUN: dsv3-opt %s --emit-bytecode | dsv3-opt | FileCheck %s

// CHECK: dsv3.param @model.embed_tokens.weight embedding : tensor<64x16xf32>
dsv3.param @"model.embed_tokens.weight" embedding : tensor<64x16xf32>
// CHECK: dsv3.param @lm_head.weight head : tensor<64x16xf32>
dsv3.param @"lm_head.weight" head : tensor<64x16xf32>
// CHECK: dsv3.param @model.layers.2.shared_head.head.weight head tied_to @lm_head.weight mtp_depth 1 : tensor<64x16xf32>
dsv3.param @"model.layers.2.shared_head.head.weight" head tied_to @"lm_head.weight" mtp_depth 1 : tensor<64x16xf32>
// CHECK: dsv3.param @model.layers.1.mlp.experts.up_proj.weight routed_experts stacked_from "model.layers.1.mlp.experts.{e}.up_proj.weight" : tensor<4x8x16xbf16>
dsv3.param @"model.layers.1.mlp.experts.up_proj.weight" routed_experts stacked_from "model.layers.1.mlp.experts.{e}.up_proj.weight" : tensor<4x8x16xbf16>
// CHECK: dsv3.param @model.layers.1.mlp.gate.e_score_correction_bias router_bias : tensor<4xf32>
dsv3.param @"model.layers.1.mlp.gate.e_score_correction_bias" router_bias : tensor<4xf32>

// CHECK-LABEL: func.func @params_and_embedding
func.func @params_and_embedding(%ids: tensor<?x?xi64>) -> tensor<?x?x16xf32> {
  // CHECK: %[[T:.+]] = dsv3.get_param @model.embed_tokens.weight : tensor<64x16xf32>
  %t = dsv3.get_param @"model.embed_tokens.weight" : tensor<64x16xf32>
  // CHECK: dsv3.embedding %{{.+}}, %[[T]] : (tensor<?x?xi64>, tensor<64x16xf32>) -> tensor<?x?x16xf32>
  %h = dsv3.embedding %ids, %t : (tensor<?x?xi64>, tensor<64x16xf32>) -> tensor<?x?x16xf32>
  return %h : tensor<?x?x16xf32>
}

// CHECK-LABEL: func.func @elementwise
func.func @elementwise(%x: tensor<2x3x16xf32>, %w: tensor<16xf32>, %lw: tensor<8x16xf32>, %b: tensor<8xf32>, %pos: tensor<2x3xi64>) -> tensor<2x3x16xf32> {
  // CHECK: dsv3.rms_norm %{{.+}}, %{{.+}} eps 9.9999999999999995E-7 : tensor<2x3x16xf32>, tensor<16xf32>
  %n = dsv3.rms_norm %x, %w eps 1.0e-6 : tensor<2x3x16xf32>, tensor<16xf32>
  // CHECK: dsv3.linear %{{.+}}, %{{.+}} : (tensor<2x3x16xf32>, tensor<8x16xf32>) -> tensor<2x3x8xf32>
  %l = dsv3.linear %n, %lw : (tensor<2x3x16xf32>, tensor<8x16xf32>) -> tensor<2x3x8xf32>
  // CHECK: dsv3.linear %{{.+}}, %{{.+}} bias %{{.+}} : (tensor<2x3x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<2x3x8xf32>
  %lb = dsv3.linear %n, %lw bias %b : (tensor<2x3x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<2x3x8xf32>
  // CHECK: dsv3.swiglu %{{.+}}, %{{.+}} : tensor<2x3x8xf32>
  %s = dsv3.swiglu %l, %lb : tensor<2x3x8xf32>
  // CHECK: dsv3.rope %{{.+}}, %{{.+}} <dim = 16, theta = 1.000000e+04, factor = 4.000000e+01, original_max_position_embeddings = 4096, mscale = 1.000000e+00, mscale_all_dim = 1.000000e+00> : tensor<2x3x16xf32>, tensor<2x3xi64>
  %r = dsv3.rope %n, %pos <dim = 16, theta = 10000.0, factor = 40.0, original_max_position_embeddings = 4096, mscale = 1.0, mscale_all_dim = 1.0> : tensor<2x3x16xf32>, tensor<2x3xi64>
  // CHECK: dsv3.rope %{{.+}}, %{{.+}} <dim = 16, theta = 5.000000e+04, interleaved = false> : tensor<2x3x16xf32>, tensor<2x3xi64>
  %r2 = dsv3.rope %r, %pos <dim = 16, theta = 50000.0, interleaved = false> : tensor<2x3x16xf32>, tensor<2x3xi64>
  // CHECK: dsv3.add %{{.+}}, %{{.+}} : tensor<2x3x16xf32>
  %a = dsv3.add %r2, %x : tensor<2x3x16xf32>
  return %a : tensor<2x3x16xf32>
}

// CHECK-LABEL: func.func @attention
func.func @attention(%x: tensor<?x?x32xf32>, %qa: tensor<16x32xf32>, %qan: tensor<16xf32>, %qb: tensor<48x16xf32>, %q: tensor<48x32xf32>,
                     %kva: tensor<12x32xf32>, %kvan: tensor<8xf32>, %kvb: tensor<72x8xf32>, %o: tensor<32x32xf32>,
                     %qab: tensor<16xf32>, %kvab: tensor<12xf32>, %ob: tensor<32xf32>,
                     %cache: tensor<?x128x12xf32>, %past: tensor<?xi64>) -> tensor<?x?x32xf32> {
  // CHECK: dsv3.latent_attention %{{.+}} q_a(%{{.+}}, %{{.+}}) q(%{{.+}}) kv_a(%{{.+}}, %{{.+}}) kv_b(%{{.+}}) o(%{{.+}}) {kv_lora_rank = 8 : i64, num_heads = 2 : i64, q_lora_rank = 16 : i64, qk_nope_head_dim = 20 : i64, qk_rope_head_dim = 4 : i64, rope = #dsv3.rope<dim = 4, theta = 1.000000e+04>, softmax_scale = 2.000000e-01 : f64, v_head_dim = 16 : i64}
  %a = dsv3.latent_attention %x q_a(%qa, %qan) q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 2 : i64, q_lora_rank = 16 : i64, kv_lora_rank = 8 : i64, qk_nope_head_dim = 20 : i64,
       qk_rope_head_dim = 4 : i64, v_head_dim = 16 : i64, softmax_scale = 0.2 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>}
      : (tensor<?x?x32xf32>, tensor<16x32xf32>, tensor<16xf32>, tensor<48x16xf32>, tensor<12x32xf32>, tensor<8xf32>, tensor<72x8xf32>, tensor<32x32xf32>) -> tensor<?x?x32xf32>
  // CHECK: dsv3.latent_attention %{{.+}} q(%{{.+}}) kv_a(%{{.+}}, %{{.+}}) kv_b(%{{.+}}) o(%{{.+}}) kv_a_bias(%{{.+}}) o_bias(%{{.+}})
  %b = dsv3.latent_attention %a q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) kv_a_bias(%kvab) o_bias(%ob)
      {num_heads = 2 : i64, kv_lora_rank = 8 : i64, qk_nope_head_dim = 20 : i64,
       qk_rope_head_dim = 4 : i64, v_head_dim = 16 : i64, softmax_scale = 0.2 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>, latent_norm_eps = 1.0e-5 : f64}
      : (tensor<?x?x32xf32>, tensor<48x32xf32>, tensor<12x32xf32>, tensor<8xf32>, tensor<72x8xf32>, tensor<32x32xf32>, tensor<12xf32>, tensor<32xf32>) -> tensor<?x?x32xf32>
  // CHECK: dsv3.latent_attention_decode %{{.+}} cache(%{{.+}}, %{{.+}}) q_a(%{{.+}}, %{{.+}}) q(%{{.+}}) kv_a(%{{.+}}, %{{.+}}) kv_b(%{{.+}}) o(%{{.+}}) q_a_bias(%{{.+}})
  %c, %cache2 = dsv3.latent_attention_decode %b cache(%cache, %past) q_a(%qa, %qan) q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) q_a_bias(%qab)
      {num_heads = 2 : i64, q_lora_rank = 16 : i64, kv_lora_rank = 8 : i64, qk_nope_head_dim = 20 : i64,
       qk_rope_head_dim = 4 : i64, v_head_dim = 16 : i64, softmax_scale = 0.2 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>}
      : (tensor<?x?x32xf32>, tensor<?x128x12xf32>, tensor<?xi64>, tensor<16x32xf32>, tensor<16xf32>, tensor<48x16xf32>, tensor<12x32xf32>, tensor<8xf32>, tensor<72x8xf32>, tensor<32x32xf32>, tensor<16xf32>) -> (tensor<?x?x32xf32>, tensor<?x128x12xf32>)
  return %c : tensor<?x?x32xf32>
}

// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<?x?x16xbf16>, %gate: tensor<4x16xbf16>, %bias: tensor<4xf32>, %down: tensor<4x16x8xbf16>) -> tensor<?x?x16xbf16> {
  // CHECK: %[[IDX:.+]], %[[W:.+]] = dsv3.moe_route sigmoid noaux_tc %{{.+}}, %{{.+}} bias %{{.+}} {n_group = 2 : i64, norm_topk_prob, num_experts_per_tok = 2 : i64, routed_scaling_factor = 2.500000e+00 : f64, topk_group = 1 : i64}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %bias {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, norm_topk_prob, routed_scaling_factor = 2.5 : f64}
      : (tensor<?x?x16xbf16>, tensor<4x16xbf16>, tensor<4xf32>) -> (tensor<?x?x2xi64>, tensor<?x?x2xf32>)
  // CHECK: dsv3.moe_route softmax group_limited_greedy
  %idx2, %w2 = dsv3.moe_route softmax group_limited_greedy %x, %gate {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 1.0 : f64}
      : (tensor<?x?x16xbf16>, tensor<4x16xbf16>) -> (tensor<?x?x2xi64>, tensor<?x?x2xf32>)
  // CHECK: dsv3.moe_route softmax greedy
  %idx3, %w3 = dsv3.moe_route softmax greedy %x, %gate {num_experts_per_tok = 3 : i64, n_group = 1 : i64, topk_group = 1 : i64, routed_scaling_factor = 1.0 : f64}
      : (tensor<?x?x16xbf16>, tensor<4x16xbf16>) -> (tensor<?x?x3xi64>, tensor<?x?x3xf32>)
  // CHECK: %[[ROWS:.+]], %[[COUNTS:.+]], %[[SLOTS:.+]] = dsv3.moe_dispatch %{{.+}}, %[[IDX]] experts 4 : (tensor<?x?x16xbf16>, tensor<?x?x2xi64>) -> (tensor<?x16xbf16>, tensor<4xi64>, tensor<?xi64>)
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 4 : (tensor<?x?x16xbf16>, tensor<?x?x2xi64>) -> (tensor<?x16xbf16>, tensor<4xi64>, tensor<?xi64>)
  // CHECK: %[[UP:.+]] = dsv3.get_param @model.layers.1.mlp.experts.up_proj.weight : tensor<4x8x16xbf16>
  %up = dsv3.get_param @"model.layers.1.mlp.experts.up_proj.weight" : tensor<4x8x16xbf16>
  // CHECK: dsv3.expert_grouped_matmul %[[ROWS]], %[[UP]], %[[COUNTS]] : (tensor<?x16xbf16>, tensor<4x8x16xbf16>, tensor<4xi64>) -> tensor<?x8xbf16>
  %u = dsv3.expert_grouped_matmul %rows, %up, %counts : (tensor<?x16xbf16>, tensor<4x8x16xbf16>, tensor<4xi64>) -> tensor<?x8xbf16>
  %d = dsv3.expert_grouped_matmul %u, %down, %counts : (tensor<?x8xbf16>, tensor<4x16x8xbf16>, tensor<4xi64>) -> tensor<?x16xbf16>
  // CHECK: dsv3.moe_combine %{{.+}}, %[[SLOTS]], %[[W]] : (tensor<?x16xbf16>, tensor<?xi64>, tensor<?x?x2xf32>) -> tensor<?x?x16xbf16>
  %y = dsv3.moe_combine %d, %slots, %w : (tensor<?x16xbf16>, tensor<?xi64>, tensor<?x?x2xf32>) -> tensor<?x?x16xbf16>
  return %y : tensor<?x?x16xbf16>
}

// CHECK-LABEL: func.func @mtp_head_loss
func.func @mtp_head_loss(%h: tensor<2x8x16xf32>, %e: tensor<2x8x16xf32>, %n: tensor<16xf32>, %eh: tensor<16x32xf32>, %ids: tensor<2x8xi64>) -> tensor<f32> {
  // CHECK: dsv3.mtp depth 1 %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} eps 9.9999999999999995E-7 : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16x32xf32>) -> tensor<2x7x16xf32>
  %m = dsv3.mtp depth 1 %h, %e, %n, %n, %eh eps 1.0e-6 : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16x32xf32>) -> tensor<2x7x16xf32>
  // CHECK: dsv3.mtp depth 2 %{{.+}}, %{{.+}}
  %m2 = dsv3.mtp depth 2 %m, %e, %n, %n, %eh eps 1.0e-6 : (tensor<2x7x16xf32>, tensor<2x8x16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16x32xf32>) -> tensor<2x6x16xf32>
  %w = dsv3.get_param @"lm_head.weight" : tensor<64x16xf32>
  // CHECK: dsv3.lm_head %{{.+}}, %{{.+}} : (tensor<2x8x16xf32>, tensor<64x16xf32>) -> tensor<2x8x64xf32>
  %l = dsv3.lm_head %h, %w : (tensor<2x8x16xf32>, tensor<64x16xf32>) -> tensor<2x8x64xf32>
  // CHECK: dsv3.last_token %{{.+}} : tensor<2x8x16xf32> -> tensor<2x1x16xf32>
  %last = dsv3.last_token %h : tensor<2x8x16xf32> -> tensor<2x1x16xf32>
  %lm = dsv3.lm_head %m, %w : (tensor<2x7x16xf32>, tensor<64x16xf32>) -> tensor<2x7x64xf32>
  // CHECK: dsv3.cross_entropy %{{.+}}, %{{.+}} shift 1 scale 1.000000e+00 : (tensor<2x8x64xf32>, tensor<2x8xi64>) -> tensor<f32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<2x8x64xf32>, tensor<2x8xi64>) -> tensor<f32>
  // CHECK: dsv3.cross_entropy %{{.+}}, %{{.+}} shift 2 scale 3.000000e-01 {ignore_index = 0 : i64}
  %c2 = dsv3.cross_entropy %lm, %ids shift 2 scale 0.3 {ignore_index = 0 : i64} : (tensor<2x7x64xf32>, tensor<2x8xi64>) -> tensor<f32>
  // CHECK: dsv3.lm_head_cross_entropy %{{.+}}, %{{.+}}, %{{.+}} shift 2 scale 3.000000e-01 {ignore_index = 0 : i64} : (tensor<2x7x16xf32>, tensor<64x16xf32>, tensor<2x8xi64>) -> tensor<f32>
  %c3 = dsv3.lm_head_cross_entropy %m, %w, %ids shift 2 scale 0.3 {ignore_index = 0 : i64} : (tensor<2x7x16xf32>, tensor<64x16xf32>, tensor<2x8xi64>) -> tensor<f32>
  // CHECK: dsv3.add %{{.+}}, %{{.+}} : tensor<f32>
  %t = dsv3.add %c, %c2 : tensor<f32>
  %t2 = dsv3.add %t, %c3 : tensor<f32>
  return %t2 : tensor<f32>
}

// CHECK-LABEL: func.func @training
func.func @training(%x: tensor<2x3x16xf32>, %w: tensor<16xf32>, %dy: tensor<2x3x16xf32>) -> tensor<16xf32> {
  // CHECK: dsv3.fill 1.000000e+00 : tensor<f32>
  %one = dsv3.fill 1.0 : tensor<f32>
  // CHECK: %{{.+}}:2 = dsv3.vjp "rms_norm"(%{{.+}}, %{{.+}}) cotangents(%{{.+}}) grads [0, 1] params {epsilon = 9.9999999999999995E-7 : f64} : (tensor<2x3x16xf32>, tensor<16xf32>, tensor<2x3x16xf32>) -> (tensor<2x3x16xf32>, tensor<16xf32>)
  %dx, %dw = dsv3.vjp "rms_norm" (%x, %w) cotangents(%dy) grads [0, 1] params {epsilon = 1.0e-6 : f64}
      : (tensor<2x3x16xf32>, tensor<16xf32>, tensor<2x3x16xf32>) -> (tensor<2x3x16xf32>, tensor<16xf32>)
  return %dw : tensor<16xf32>
}

dsv3.param @"opt.w" norm : tensor<16xf32>
dsv3.param @"opt.m" optimizer_state : tensor<16xf32>
dsv3.param @"opt.v" optimizer_state : tensor<16xf32>
dsv3.param @"opt.bias" router_bias : tensor<4xf32>

// CHECK-LABEL: func.func @optimizer
func.func @optimizer(%g: tensor<16xf32>, %g2: tensor<4x4xf32>, %step: i64, %lr: tensor<f32>, %counts: tensor<4xi64>,
                     %x: tensor<1x3x16xf32>, %gate: tensor<4x16xf32>, %idx: tensor<1x3x2xi64>) -> tensor<f32> {
  // CHECK: %[[N:.+]] = dsv3.global_norm %{{.+}}, %{{.+}} : tensor<16xf32>, tensor<4x4xf32> -> tensor<f32>
  %n = dsv3.global_norm %g, %g2 : tensor<16xf32>, tensor<4x4xf32> -> tensor<f32>
  // CHECK: dsv3.adamw @opt.w, @opt.m, @opt.v grad %{{.+}} step %{{.+}} lr %{{.+}} norm %[[N]] {beta1 = 9.000000e-01 : f64, beta2 = 0.94999999999999996 : f64, eps = 1.000000e-08 : f64, max_grad_norm = 1.000000e+00 : f64, weight_decay = 1.000000e-01 : f64} : tensor<16xf32>
  dsv3.adamw @"opt.w", @"opt.m", @"opt.v" grad %g step %step lr %lr norm %n {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-8 : f64, weight_decay = 0.1 : f64, max_grad_norm = 1.0 : f64} : tensor<16xf32>
  // CHECK: dsv3.expert_bias_update @opt.bias counts %{{.+}} rate 1.000000e-03 : tensor<4xi64>
  dsv3.expert_bias_update @"opt.bias" counts %counts rate 1.0e-3 : tensor<4xi64>
  // CHECK: dsv3.moe_balance_loss sigmoid %{{.+}}, %{{.+}}, %{{.+}} {alpha = 1.000000e-04 : f64, sequence_wise} : (tensor<1x3x16xf32>, tensor<4x16xf32>, tensor<1x3x2xi64>) -> tensor<f32>
  %b = dsv3.moe_balance_loss sigmoid %x, %gate, %idx {alpha = 1.0e-4 : f64, sequence_wise} : (tensor<1x3x16xf32>, tensor<4x16xf32>, tensor<1x3x2xi64>) -> tensor<f32>
  return %b : tensor<f32>
}

// CHECK-LABEL: func.func @fused
func.func @fused(%x: tensor<?x?x8xf32>, %w: tensor<16x8xf32>, %rows: tensor<?x8xf32>, %we: tensor<4x16x8xf32>, %c: tensor<4xi64>) -> tensor<?x16xf32> {
  // CHECK: dsv3.gated_linear %{{.+}}, %{{.+}}, %{{.+}} : (tensor<?x?x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  %a = dsv3.gated_linear %x, %w, %w : (tensor<?x?x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  // CHECK: dsv3.expert_gated_matmul %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
  %e = dsv3.expert_gated_matmul %rows, %we, %we, %c : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
  return %e : tensor<?x16xf32>
}

// CHECK-LABEL: func.func @linear_add
func.func @linear_add(%x: tensor<?x?x16xf32>, %w: tensor<8x16xf32>, %r: tensor<?x?x8xf32>) -> tensor<?x?x8xf32> {
  // CHECK: dsv3.linear_add %{{.+}}, %{{.+}}, %{{.+}} : (tensor<?x?x16xf32>, tensor<8x16xf32>, tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  %y = dsv3.linear_add %x, %w, %r : (tensor<?x?x16xf32>, tensor<8x16xf32>, tensor<?x?x8xf32>) -> tensor<?x?x8xf32>
  return %y : tensor<?x?x8xf32>
}

// CHECK-LABEL: func.func @collectives
func.func @collectives(%rows: tensor<?x8xf32>, %c: tensor<4xi64>, %g: tensor<16x8xf32>) -> (tensor<?x8xf32>, tensor<16x8xf32>) {
  // CHECK: %{{.+}}, %{{.+}}, %[[L:.+]] = dsv3.ep_dispatch %{{.+}}, %{{.+}} ranks 2 : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<2xi64>, tensor<2x2xi64>)
  %local, %lc, %layout = dsv3.ep_dispatch %rows, %c ranks 2 : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<2xi64>, tensor<2x2xi64>)
  // CHECK: dsv3.ep_combine %{{.+}}, %[[L]], %{{.+}} ranks 2 : (tensor<?x8xf32>, tensor<2x2xi64>, tensor<4xi64>) -> tensor<?x8xf32>
  %back = dsv3.ep_combine %local, %layout, %c ranks 2 : (tensor<?x8xf32>, tensor<2x2xi64>, tensor<4xi64>) -> tensor<?x8xf32>
  // CHECK: dsv3.ep_dispatch %{{.+}}, %{{.+}} ranks 2 capacity 1.500000e+00 :
  %l2, %lc2, %layout2 = dsv3.ep_dispatch %rows, %c ranks 2 capacity 1.5 : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<2xi64>, tensor<2x2xi64>)
  // CHECK: dsv3.all_reduce "mean" over "data" 2 %{{.+}} : tensor<16x8xf32>
  %r = dsv3.all_reduce "mean" over "data" 2 %g : tensor<16x8xf32>
  return %back, %r : tensor<?x8xf32>, tensor<16x8xf32>
}
