// RUN: dsv3-opt %s -split-input-file -dsv3-lower-to-kernels='max-batch=2 max-seq=16 max-tokens=6' | FileCheck %s
// RUN: dsv3-opt %s -split-input-file -dsv3-lower-to-kernels='max-batch=2 max-seq=16 max-tokens=100' | FileCheck %s --check-prefix=CAPPED

// With a token budget (dsv3c --max-tokens), the activations are planned for
// that many rows, [1, 6, ...] instead of [max-batch, max-seq, ...]; the
// decode cache (an argument, per sequence) is not re-planned, and the entry
// records its budget for the runtime's argument check.
// The decode cache is updated in place: the launch writes the cache
// argument and the function returns it.
dsv3.param @"q" attention : tensor<48x32xf32>
dsv3.param @"kva" attention : tensor<12x32xf32>
dsv3.param @"kvan" norm : tensor<8xf32>
dsv3.param @"kvb" attention : tensor<72x8xf32>
dsv3.param @"o" attention : tensor<32x32xf32>
// CHECK-LABEL: func.func @decode(%arg0: memref<?x?x32xf32>, %arg1: memref<?x?x12xf32>, %arg2: memref<?xi64>)
// CHECK-SAME: dsv3k.max_tokens = 6 : i64
// CHECK: %[[OUT:.+]] = dsv3k.alloc max_shape [1, 6, 32] : memref<?x?x32xf32>
// CHECK: dsv3k.launch "latent_attention_decode" ins(%arg0, %arg1, %arg2, {{.+}}) outs(%[[OUT]], %arg1 : memref<?x?x32xf32>, memref<?x?x12xf32>)

// A budget above max-batch x max-seq is capped at it.
// CAPPED-LABEL: func.func @decode
// CAPPED-SAME: dsv3k.max_tokens = 32 : i64
// CAPPED: dsv3k.alloc max_shape [1, 32, 32]
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

// -----

// The last position of each sequence: planned for max-batch rows (2), not
// for the [1, 6] rows of the token budget's activations (a prefill of 2
// sequences then fits), nor for one row per token.
// CHECK-LABEL: func.func @prefill
// CHECK: %[[LAST:.+]] = dsv3k.alloc max_shape [2, 1, 32] : memref<?x1x32xf32>
// CHECK: dsv3k.launch "last_token" ins(%arg0 : memref<?x?x32xf32>) outs(%[[LAST]] : memref<?x1x32xf32>)
// CAPPED-LABEL: func.func @prefill
// CAPPED: dsv3k.alloc max_shape [2, 1, 32] : memref<?x1x32xf32>
func.func @prefill(%x: tensor<?x?x32xf32>) -> tensor<?x1x32xf32> attributes {dsv3.entry = "forward"} {
  %l = dsv3.last_token %x : tensor<?x?x32xf32> -> tensor<?x1x32xf32>
  return %l : tensor<?x1x32xf32>
}
