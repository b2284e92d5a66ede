// RUN: dsv3-opt %s -split-input-file -dsv3-lower-to-kernels='max-batch=2 max-seq=16' | FileCheck %s

dsv3.param @"model.norm.weight" norm : tensor<8xf32>
dsv3.param @"lm_head.weight" head : tensor<32x8xf32>

// Every dsv3 op becomes one launch; every result one alloc sized at the
// maxima; params become dsv3k.param; the attributes become kernel params.
// CHECK-LABEL: func.func @forward(%arg0: memref<?x?x8xf32>) -> memref<?x?x32xf32> attributes {dsv3.entry = "forward"}
// CHECK-NEXT: %[[W:.+]] = dsv3k.param @model.norm.weight : memref<8xf32>
// CHECK-NEXT: %[[N:.+]] = dsv3k.alloc max_shape [2, 16, 8] : memref<?x?x8xf32>
// CHECK-NEXT: dsv3k.launch "rms_norm" ins(%arg0, %[[W]] : memref<?x?x8xf32>, memref<8xf32>) outs(%[[N]] : memref<?x?x8xf32>) params {epsilon = 9.9999999999999995E-7 : f64}
// CHECK-NEXT: %[[H:.+]] = dsv3k.param @lm_head.weight : memref<32x8xf32>
// CHECK-NEXT: %[[L:.+]] = dsv3k.alloc max_shape [2, 16, 32] : memref<?x?x32xf32>
// CHECK-NEXT: dsv3k.launch "lm_head" ins(%[[N]], %[[H]] : memref<?x?x8xf32>, memref<32x8xf32>) outs(%[[L]] : memref<?x?x32xf32>) params {}
// CHECK-NEXT: return %[[L]] : memref<?x?x32xf32>
func.func @forward(%x: tensor<?x?x8xf32>) -> tensor<?x?x32xf32> attributes {dsv3.entry = "forward"} {
  %w = dsv3.get_param @"model.norm.weight" : tensor<8xf32>
  %n = dsv3.rms_norm %x, %w eps 1.0e-6 : tensor<?x?x8xf32>, tensor<8xf32>
  %h = dsv3.get_param @"lm_head.weight" : tensor<32x8xf32>
  %l = dsv3.lm_head %n, %h : (tensor<?x?x8xf32>, tensor<32x8xf32>) -> tensor<?x?x32xf32>
  return %l : tensor<?x?x32xf32>
}

// Functions that are not entries are left alone.
// CHECK-LABEL: func.func @helper
// CHECK: dsv3.add
func.func @helper(%a: tensor<4xf32>) -> tensor<4xf32> {
  %s = dsv3.add %a, %a : tensor<4xf32>
  return %s : tensor<4xf32>
}

// -----

// Routing and dispatch: the routed rows are batch x seq x top_k at the
// maxima; optional operands keep their segment sizes for the kernel.
dsv3.param @"g" router : tensor<4x8xf32>
dsv3.param @"b" router_bias : tensor<4xf32>
// CHECK-LABEL: func.func @moe
// CHECK: %[[IDX:.+]] = dsv3k.alloc max_shape [2, 16, 2] : memref<?x?x2xi64>
// CHECK: %[[WTS:.+]] = dsv3k.alloc max_shape [2, 16, 2] : memref<?x?x2xf32>
// CHECK: dsv3k.launch "moe_route" ins(%arg0, %{{.+}}, %{{.+}} : memref<?x?x8xf32>, memref<4x8xf32>, memref<4xf32>) outs(%[[IDX]], %[[WTS]] : memref<?x?x2xi64>, memref<?x?x2xf32>) params {n_group = 2 : i64, norm_topk_prob, num_experts_per_tok = 2 : i64, routed_scaling_factor = 2.500000e+00 : f64, scoring_func = 0 : i32, topk_group = 1 : i64, topk_method = 2 : i32}
// CHECK: dsv3k.alloc max_shape [64, 8] : memref<?x8xf32>
// CHECK: dsv3k.alloc max_shape [4] : memref<4xi64>
// CHECK: dsv3k.alloc max_shape [64] : memref<?xi64>
// CHECK: dsv3k.launch "moe_dispatch"
func.func @moe(%x: tensor<?x?x8xf32>) -> tensor<?xi64> attributes {dsv3.entry = "forward"} {
  %g = dsv3.get_param @"g" : tensor<4x8xf32>
  %b = dsv3.get_param @"b" : tensor<4xf32>
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %g bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, norm_topk_prob, routed_scaling_factor = 2.5 : f64}
      : (tensor<?x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> (tensor<?x?x2xi64>, tensor<?x?x2xf32>)
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 4 : (tensor<?x?x8xf32>, tensor<?x?x2xi64>) -> (tensor<?x8xf32>, tensor<4xi64>, tensor<?xi64>)
  return %slots : tensor<?xi64>
}

// -----

// The decode cache is updated in place: the launch writes the cache
// argument and the function returns it.
dsv3.param @"q" attention : tensor<48x32xf32>
dsv3.param @"kva" attention : tensor<12x32xf32>
dsv3.param @"kvan" norm : tensor<8xf32>
dsv3.param @"kvb" attention : tensor<72x8xf32>
dsv3.param @"o" attention : tensor<32x32xf32>
// CHECK-LABEL: func.func @decode(%arg0: memref<?x?x32xf32>, %arg1: memref<?x?x12xf32>, %arg2: memref<?xi64>) -> (memref<?x?x32xf32>, memref<?x?x12xf32>)
// CHECK: %[[OUT:.+]] = dsv3k.alloc max_shape [2, 16, 32] : memref<?x?x32xf32>
// CHECK: dsv3k.launch "latent_attention_decode" ins(%arg0, %arg1, %arg2, {{.+}}) outs(%[[OUT]], %arg1 : memref<?x?x32xf32>, memref<?x?x12xf32>) params {{.+}}operandSegmentSizes = array<i32: 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0>
// CHECK: return %[[OUT]], %arg1
func.func @decode(%x: tensor<?x?x32xf32>, %cache: tensor<?x?x12xf32>, %past: tensor<?xi64>) -> (tensor<?x?x32xf32>, tensor<?x?x12xf32>) attributes {dsv3.entry = "decode"} {
  %q = dsv3.get_param @"q" : tensor<48x32xf32>
  %kva = dsv3.get_param @"kva" : tensor<12x32xf32>
  %kvan = dsv3.get_param @"kvan" : tensor<8xf32>
  %kvb = dsv3.get_param @"kvb" : tensor<72x8xf32>
  %o = dsv3.get_param @"o" : tensor<32x32xf32>
  %a, %c = dsv3.latent_attention_decode %x cache(%cache, %past) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 2 : i64, kv_lora_rank = 8 : i64, qk_nope_head_dim = 20 : i64,
       qk_rope_head_dim = 4 : i64, v_head_dim = 16 : i64, softmax_scale = 0.2 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>}
      : (tensor<?x?x32xf32>, tensor<?x?x12xf32>, tensor<?xi64>, tensor<48x32xf32>, tensor<12x32xf32>, tensor<8xf32>, tensor<72x8xf32>, tensor<32x32xf32>) -> (tensor<?x?x32xf32>, tensor<?x?x12xf32>)
  return %a, %c : tensor<?x?x32xf32>, tensor<?x?x12xf32>
}
