// RUN: dsv3-opt %s -split-input-file -pass-pipeline='builtin.module(dsv3-quantize-kv-cache)' | FileCheck %s --check-prefix=FP8
// RUN: dsv3-opt %s -split-input-file -pass-pipeline='builtin.module(dsv3-quantize-kv-cache{storage=bf16})' | FileCheck %s --check-prefix=BF16
// RUN: dsv3-opt %s -split-input-file -pass-pipeline='builtin.module(dsv3-quantize-kv-cache{storage=fp8},dsv3-lower-to-kernels)' | FileCheck %s --check-prefix=KERNELS
// RUN: not dsv3-opt %s -split-input-file -pass-pipeline='builtin.module(dsv3-quantize-kv-cache{storage=int4})' 2>&1 | FileCheck %s --check-prefix=BAD

// Every decode cache gets the storage; the cache operand keeps its type
// (the host keeps the rounded values in f32), the kernel gets the storage
// among its parameters.

// FP8-LABEL: func.func @decode
// FP8: dsv3.latent_attention_decode %{{[a-z0-9]+}} cache(%{{[a-z0-9]+}}, %{{[a-z0-9]+}}) storage fp8 q(
// FP8-SAME: -> (tensor<?x?x32xf32>, tensor<?x128x12xf32>)
// BF16-LABEL: func.func @decode
// BF16: dsv3.latent_attention_decode %{{[a-z0-9]+}} cache(%{{[a-z0-9]+}}, %{{[a-z0-9]+}}) storage bf16 q(
// KERNELS-LABEL: func.func @decode
// KERNELS: dsv3k.launch "latent_attention_decode" {{.*}} params {cache_storage = 2 : i32,
// BAD: dsv3-quantize-kv-cache: storage must be f32, bf16 or fp8, got 'int4'
func.func @decode(%x: tensor<?x?x32xf32>, %qb: tensor<48x32xf32>, %kva: tensor<12x32xf32>,
                  %kvan: tensor<8xf32>, %kvb: tensor<72x8xf32>, %o: tensor<32x32xf32>,
                  %cache: tensor<?x128x12xf32>, %past: tensor<?xi64>)
    -> (tensor<?x?x32xf32>, tensor<?x128x12xf32>) attributes {dsv3.entry = "decode"} {
  %a, %c = dsv3.latent_attention_decode %x cache(%cache, %past) q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 2 : i64, kv_lora_rank = 8 : i64, qk_nope_head_dim = 20 : i64,
       qk_rope_head_dim = 4 : i64, v_head_dim = 16 : i64, softmax_scale = 0.2 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>}
      : (tensor<?x?x32xf32>, tensor<?x128x12xf32>, tensor<?xi64>, tensor<48x32xf32>, tensor<12x32xf32>, tensor<8xf32>, tensor<72x8xf32>, tensor<32x32xf32>) -> (tensor<?x?x32xf32>, tensor<?x128x12xf32>)
  return %a, %c : tensor<?x?x32xf32>, tensor<?x128x12xf32>
}

// -----

// A storage already set round-trips, and the pass sets it again.

// FP8-LABEL: func.func @already
// FP8: storage fp8
// BF16-LABEL: func.func @already
// BF16: storage bf16
func.func @already(%x: tensor<?x?x32xf32>, %qb: tensor<48x32xf32>, %kva: tensor<12x32xf32>,
                   %kvan: tensor<8xf32>, %kvb: tensor<72x8xf32>, %o: tensor<32x32xf32>,
                   %cache: tensor<?x128x12xf32>, %past: tensor<?xi64>) -> tensor<?x?x32xf32> {
  %a, %c = dsv3.latent_attention_decode %x cache(%cache, %past) storage bf16 q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 2 : i64, kv_lora_rank = 8 : i64, qk_nope_head_dim = 20 : i64,
       qk_rope_head_dim = 4 : i64, v_head_dim = 16 : i64, softmax_scale = 0.2 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>}
      : (tensor<?x?x32xf32>, tensor<?x128x12xf32>, tensor<?xi64>, tensor<48x32xf32>, tensor<12x32xf32>, tensor<8xf32>, tensor<72x8xf32>, tensor<32x32xf32>) -> (tensor<?x?x32xf32>, tensor<?x128x12xf32>)
  return %a : tensor<?x?x32xf32>
}
