// RUN: dsv3-opt %s -split-input-file -dsv3-verify-model -verify-diagnostics | FileCheck %s

// A well-formed module passes unchanged.
// CHECK-LABEL: func.func @forward
dsv3.param @"model.embed_tokens.weight" embedding : tensor<32x8xf32>
dsv3.param @"lm_head.weight" head : tensor<32x8xf32>
func.func @forward(%ids: tensor<?x?xi64>) -> tensor<?x?x32xf32> attributes {dsv3.entry = "forward"} {
  %t = dsv3.get_param @"model.embed_tokens.weight" : tensor<32x8xf32>
  %h = dsv3.embedding %ids, %t : (tensor<?x?xi64>, tensor<32x8xf32>) -> tensor<?x?x8xf32>
  %w = dsv3.get_param @"lm_head.weight" : tensor<32x8xf32>
  %l = dsv3.lm_head %h, %w : (tensor<?x?x8xf32>, tensor<32x8xf32>) -> tensor<?x?x32xf32>
  return %l : tensor<?x?x32xf32>
}

// -----

// Two parameters may not bind the same checkpoint tensor: the stacked
// experts expand to model.layers.1.mlp.experts.0.up_proj.weight ...
// expected-warning @+1 {{is never read}}
dsv3.param @"model.layers.1.mlp.experts.0.up_proj.weight" routed_experts : tensor<4x8xf32>
// expected-warning @+2 {{is never read}}
// expected-error @+1 {{binds checkpoint tensor 'model.layers.1.mlp.experts.0.up_proj.weight', already bound by @model.layers.1.mlp.experts.0.up_proj.weight}}
dsv3.param @"model.layers.1.mlp.experts.up_proj.weight" routed_experts stacked_from "model.layers.1.mlp.experts.{e}.up_proj.weight" : tensor<2x4x8xf32>

// -----

// An unread parameter is reported, not rejected.
// expected-warning @+1 {{parameter @model.norm.weight is never read}}
dsv3.param @"model.norm.weight" norm : tensor<8xf32>

// -----

// Dispatch and routing must agree on the number of experts.
func.func @experts_disagree(%x: tensor<1x4x8xf32>, %g: tensor<4x8xf32>) -> tensor<8xi64> {
  %idx, %w = dsv3.moe_route softmax greedy %x, %g {num_experts_per_tok = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, routed_scaling_factor = 1.0 : f64}
      : (tensor<1x4x8xf32>, tensor<4x8xf32>) -> (tensor<1x4x2xi64>, tensor<1x4x2xf32>)
  // expected-error @+1 {{permutes tokens over 6 experts, but its indices come from a dsv3.moe_route over 4}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 6 : (tensor<1x4x8xf32>, tensor<1x4x2xi64>) -> (tensor<8x8xf32>, tensor<6xi64>, tensor<8xi64>)
  return %slots : tensor<8xi64>
}

// -----

// expected-error @+1 {{entry 'forward' must be (ids [batch, seq]) -> logits [batch, seq, vocab]}}
func.func @forward(%ids: tensor<?x?xf32>, %l: tensor<?x?x32xf32>) -> tensor<?x?x32xf32> attributes {dsv3.entry = "forward"} {
  return %l : tensor<?x?x32xf32>
}

// -----

// expected-error @+1 {{entry 'loss' must be (ids [batch, seq]) -> tensor<f32>, got '(tensor<?x?xi64>, tensor<f64>) -> tensor<f64>'}}
func.func @loss(%ids: tensor<?x?xi64>, %c: tensor<f64>) -> tensor<f64> attributes {dsv3.entry = "loss"} {
  return %c : tensor<f64>
}

// -----

// expected-error @+1 {{entry 'decode' must be (ids, past_len : tensor<[batch] x i64>, cache...) -> (logits, cache...) with each cache returned in its own type}}
func.func @decode(%ids: tensor<?x?xi64>, %past: tensor<?xi64>, %c: tensor<?x?x12xf32>) -> tensor<?x?x12xf32> attributes {dsv3.entry = "decode"} {
  return %c : tensor<?x?x12xf32>
}

// -----

// expected-error @+1 {{unknown entry kind 'sample' (expected forward, loss, train_loss, decode, prefill, forward_mtp, gradients, train_gradients or train_step)}}
func.func @sample() attributes {dsv3.entry = "sample"} {
  return
}

// -----

// The prefill entry returns the logits of one position a sequence.
// expected-error @+1 {{entry 'prefill' must be (ids, past_len : tensor<[batch] x i64>, cache...) -> (logits [batch, 1, vocab], cache...)}}
func.func @prefill(%ids: tensor<?x?xi64>, %past: tensor<?xi64>, %c: tensor<?x?x12xf32>) -> (tensor<?x?x12xf32>, tensor<?x?x12xf32>) attributes {dsv3.entry = "prefill"} {
  return %c, %c : tensor<?x?x12xf32>, tensor<?x?x12xf32>
}
