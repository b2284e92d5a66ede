// RUN: dsv3-opt %s -split-input-file -verify-diagnostics

// One case per verifier message of the dsv3 dialect; each breaks one rule.

//===--- dsv3.param ---===//
// A parameter's type must have a static shape.
// expected-error @+1 {{parameter @w must have a static shape, got 'tensor<?x4xf32>'}}
dsv3.param @w norm : tensor<?x4xf32>

// -----

// A stacked_from template must contain {e} exactly once.
// expected-error @+1 {{stacked_from template "experts.{e}.w.{e}" must contain '{e}' exactly once}}
dsv3.param @w routed_experts stacked_from "experts.{e}.w.{e}" : tensor<4x2x2xf32>

// -----

// A stacked parameter must have rank >= 2.
// expected-error @+1 {{a stacked parameter stacks expert tensors along dimension 0, so its rank must be >= 2, got 'tensor<4xf32>'}}
dsv3.param @w routed_experts stacked_from "experts.{e}.w" : tensor<4xf32>

// -----

// mtp_depth must be >= 1.
// expected-error @+1 {{mtp_depth must be >= 1, got 0}}
dsv3.param @w head mtp_depth 0 : tensor<4xf32>

// -----

// A parameter cannot be tied to itself.
// expected-error @+1 {{parameter @w cannot be tied to itself}}
dsv3.param @w head tied_to @w : tensor<4xf32>

// -----

// tied_to must name a dsv3.param.
// expected-error @+1 {{tied_to @missing does not name a dsv3.param}}
dsv3.param @w head tied_to @missing : tensor<4xf32>

// -----

// tied_to must name an original parameter, not a tied copy.
dsv3.param @a head : tensor<4xf32>
dsv3.param @b head tied_to @a : tensor<4xf32>
// expected-error @+1 {{tied_to @b is itself tied; tie to the original parameter}}
dsv3.param @c head tied_to @b : tensor<4xf32>

// -----

// A tied parameter must have the type of its original.
dsv3.param @a head : tensor<4xf32>
// expected-error @+1 {{type 'tensor<8xf32>' differs from the type 'tensor<4xf32>' of the parameter it is tied to (@a)}}
dsv3.param @b head tied_to @a : tensor<8xf32>

// -----

//===--- dsv3.get_param ---===//
// get_param must reference a dsv3.param.
func.func @get_param_missing() {
  // expected-error @+1 {{@missing does not reference a dsv3.param}}
  %w = dsv3.get_param @missing : tensor<4xf32>
  return
}

// -----

// get_param's result type must be the parameter's type.
dsv3.param @w norm : tensor<4xf32>
func.func @get_param_type(){
  // expected-error @+1 {{result type 'tensor<8xf32>' does not match the type 'tensor<4xf32>' of parameter @w}}
  %w = dsv3.get_param @w : tensor<8xf32>
  return
}

// -----

//===--- dsv3.embedding ---===//
// The table must be rank 2.
func.func @embedding_table_rank(%ids: tensor<2x3xi64>, %t: tensor<64xf32>) {
  // expected-error @+1 {{table must be [vocab, hidden], got 'tensor<64xf32>'}}
  %h = dsv3.embedding %ids, %t : (tensor<2x3xi64>, tensor<64xf32>) -> tensor<2x3x16xf32>
  return
}

// -----

// The result shape must be the ids shape plus hidden.
func.func @embedding_result_shape(%ids: tensor<2x3xi64>, %t: tensor<64x16xf32>) {
  // expected-error @+1 {{result must be ids shape + [hidden] = [2, 3, 16], got 'tensor<2x3x8xf32>'}}
  %h = dsv3.embedding %ids, %t : (tensor<2x3xi64>, tensor<64x16xf32>) -> tensor<2x3x8xf32>
  return
}

// -----

// The result element type must be the table's.
func.func @embedding_result_elt(%ids: tensor<2x3xi64>, %t: tensor<64x16xf32>) {
  // expected-error @+1 {{result element type 'bf16' must equal the table element type 'f32'}}
  %h = dsv3.embedding %ids, %t : (tensor<2x3xi64>, tensor<64x16xf32>) -> tensor<2x3x16xbf16>
  return
}

// -----

//===--- dsv3.rms_norm ---===//
// The input must have rank >= 1.
func.func @rms_norm_rank0(%x: tensor<f32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{input must have rank >= 1}}
  %n = dsv3.rms_norm %x, %w eps 1.0e-6 : tensor<f32>, tensor<4xf32>
  return
}

// -----

// The weight must have the size of the input's last dimension.
func.func @rms_norm_weight(%x: tensor<2x3x4xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{weight must be [last dimension of the input] = [4], got 'tensor<8xf32>'}}
  %n = dsv3.rms_norm %x, %w eps 1.0e-6 : tensor<2x3x4xf32>, tensor<8xf32>
  return
}

// -----

// epsilon must be positive.
func.func @rms_norm_eps(%x: tensor<2x3x4xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{epsilon (0.000000e+00) must be positive}}
  %n = dsv3.rms_norm %x, %w eps 0.0 : tensor<2x3x4xf32>, tensor<4xf32>
  return
}

// -----

//===--- dsv3.linear ---===//
// The input must have rank >= 1.
func.func @linear_rank0(%x: tensor<f32>, %w: tensor<8x4xf32>) {
  // expected-error @+1 {{input must have rank >= 1}}
  %l = dsv3.linear %x, %w : (tensor<f32>, tensor<8x4xf32>) -> tensor<8xf32>
  return
}

// -----

// The weight must be rank 2.
func.func @linear_weight_rank(%x: tensor<2x4xf32>, %w: tensor<8x4x1xf32>) {
  // expected-error @+1 {{weight must be [out, in], got 'tensor<8x4x1xf32>'}}
  %l = dsv3.linear %x, %w : (tensor<2x4xf32>, tensor<8x4x1xf32>) -> tensor<2x8xf32>
  return
}

// -----

// The input features must equal the weight's in dimension.
func.func @linear_in(%x: tensor<2x4xf32>, %w: tensor<8x6xf32>) {
  // expected-error @+1 {{input features (4) must equal the weight's in dimension (6)}}
  %l = dsv3.linear %x, %w : (tensor<2x4xf32>, tensor<8x6xf32>) -> tensor<2x8xf32>
  return
}

// -----

// The bias must be [out].
func.func @linear_bias(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{bias must be [out] = [8], got 'tensor<4xf32>'}}
  %l = dsv3.linear %x, %w bias %b : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<4xf32>) -> tensor<2x8xf32>
  return
}

// -----

// The result must be the input shape with the last dimension = out.
func.func @linear_result(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>) {
  // expected-error @+1 {{result must be input shape with the last dimension = out = [2, 8], got 'tensor<2x4xf32>'}}
  %l = dsv3.linear %x, %w : (tensor<2x4xf32>, tensor<8x4xf32>) -> tensor<2x4xf32>
  return
}

// -----

// The result element type must be the input's.
func.func @linear_result_elt(%x: tensor<2x4xf32>, %w: tensor<8x4xf32>) {
  // expected-error @+1 {{result element type 'f16' must equal the input element type 'f32'}}
  %l = dsv3.linear %x, %w : (tensor<2x4xf32>, tensor<8x4xf32>) -> tensor<2x8xf16>
  return
}

// -----

//===--- dsv3.rope ---===//
// The input must be rank 3 or 4.
func.func @rope_rank(%x: tensor<2x4xf32>, %pos: tensor<2x4xi64>) {
  // expected-error @+1 {{input must be [batch, seq, dim] or [batch, seq, heads, dim], got 'tensor<2x4xf32>'}}
  %r = dsv3.rope %x, %pos <dim = 4, theta = 10000.0> : tensor<2x4xf32>, tensor<2x4xi64>
  return
}

// -----

// The input's last dimension must equal the rope dim.
func.func @rope_dim(%x: tensor<2x3x8xf32>, %pos: tensor<2x3xi64>) {
  // expected-error @+1 {{input's last dimension (8) must equal the rope dim (4)}}
  %r = dsv3.rope %x, %pos <dim = 4, theta = 10000.0> : tensor<2x3x8xf32>, tensor<2x3xi64>
  return
}

// -----

// positions must be [batch, seq] of the input.
func.func @rope_positions(%x: tensor<2x3x4xf32>, %pos: tensor<2x5xi64>) {
  // expected-error @+1 {{positions must be [batch, seq] of the input = [2, 3], got 'tensor<2x5xi64>'}}
  %r = dsv3.rope %x, %pos <dim = 4, theta = 10000.0> : tensor<2x3x4xf32>, tensor<2x5xi64>
  return
}

// -----

//===--- #dsv3.rope ---===//
// The rope dim must be a positive even number.
func.func @rope_attr_dim(%x: tensor<2x3x3xf32>, %pos: tensor<2x3xi64>) {
  // expected-error @+1 {{rope dim (3) must be a positive even number}}
  %r = dsv3.rope %x, %pos <dim = 3, theta = 10000.0> : tensor<2x3x3xf32>, tensor<2x3xi64>
  return
}

// -----

// The rope theta must be > 1.
func.func @rope_attr_theta(%x: tensor<2x3x4xf32>, %pos: tensor<2x3xi64>) {
  // expected-error @+1 {{rope theta (1.000000e+00) must be > 1}}
  %r = dsv3.rope %x, %pos <dim = 4, theta = 1.0> : tensor<2x3x4xf32>, tensor<2x3xi64>
  return
}

// -----

// The rope factor must be >= 0.
func.func @rope_attr_factor(%x: tensor<2x3x4xf32>, %pos: tensor<2x3xi64>) {
  // expected-error @+1 {{rope factor (-1.000000e+00) must be >= 0 (0 = no YaRN scaling)}}
  %r = dsv3.rope %x, %pos <dim = 4, theta = 10000.0, factor = -1.0> : tensor<2x3x4xf32>, tensor<2x3xi64>
  return
}

// -----

// YaRN needs original_max_position_embeddings > 0.
func.func @rope_attr_yarn_positions(%x: tensor<2x3x4xf32>, %pos: tensor<2x3xi64>) {
  // expected-error @+1 {{YaRN rope needs original_max_position_embeddings > 0, got 0}}
  %r = dsv3.rope %x, %pos <dim = 4, theta = 10000.0, factor = 40.0> : tensor<2x3x4xf32>, tensor<2x3xi64>
  return
}

// -----

// YaRN needs beta_fast > beta_slow > 0.
func.func @rope_attr_yarn_beta(%x: tensor<2x3x4xf32>, %pos: tensor<2x3xi64>) {
  // expected-error @+1 {{YaRN rope needs beta_fast (1.000000e+00) > beta_slow (2.000000e+00) > 0}}
  %r = dsv3.rope %x, %pos <dim = 4, theta = 10000.0, factor = 40.0, original_max_position_embeddings = 4096, beta_fast = 1.0, beta_slow = 2.0> : tensor<2x3x4xf32>, tensor<2x3xi64>
  return
}

// -----

//===--- dsv3.latent_attention ---===//
// num_heads must be positive.
func.func @la_num_heads(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{num_heads (0) must be positive}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 0 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// kv_lora_rank must be positive.
func.func @la_kv_lora_rank(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{kv_lora_rank (0) must be positive}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 0 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// qk_nope_head_dim must be positive.
func.func @la_qk_nope_head_dim(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{qk_nope_head_dim (0) must be positive}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 0 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// qk_rope_head_dim must be positive.
func.func @la_qk_rope_head_dim(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{qk_rope_head_dim (0) must be positive}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 0 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// v_head_dim must be positive.
func.func @la_v_head_dim(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{v_head_dim (0) must be positive}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 0 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// The rope dim must equal qk_rope_head_dim.
func.func @la_rope_dim(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{rope dim (4) must equal qk_rope_head_dim (2)}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 4, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// softmax_scale must be positive.
func.func @la_softmax_scale(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{softmax_scale (0.000000e+00) must be positive}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.0 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// hidden must be rank 3.
func.func @la_hidden_rank(%x: tensor<2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{hidden must have rank 3 ([batch, seq, hidden]), got 'tensor<2x8xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<2x8xf32>
  return
}

// -----

// q_lora_rank needs the q_a weights.
func.func @la_q_lora_no_qa(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{q_lora_rank is set (3) but the q_a(q_a_proj, q_a_norm) weights are missing}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, q_lora_rank = 3 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// The q_a weights need q_lora_rank.
func.func @la_qa_no_q_lora(%x: tensor<1x2x8xf32>, %qa: tensor<3x8xf32>, %qan: tensor<3xf32>, %q: tensor<4x3xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{q_a(q_a_proj, q_a_norm) weights are given but q_lora_rank is not set}}
  %r = dsv3.latent_attention %x q_a(%qa, %qan) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<3x8xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// q_lora_rank must be positive.
func.func @la_q_lora_rank(%x: tensor<1x2x8xf32>, %qa: tensor<0x8xf32>, %qan: tensor<0xf32>, %q: tensor<4x0xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{q_lora_rank (0) must be positive}}
  %r = dsv3.latent_attention %x q_a(%qa, %qan) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, q_lora_rank = 0 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<0x8xf32>, tensor<0xf32>, tensor<4x0xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// q_a_proj must be [q_lora_rank, hidden].
func.func @la_q_a_proj(%x: tensor<1x2x8xf32>, %qa: tensor<3x4xf32>, %qan: tensor<3xf32>, %q: tensor<4x3xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{q_a_proj must be [q_lora_rank, hidden] = [3, 8], got 'tensor<3x4xf32>'}}
  %r = dsv3.latent_attention %x q_a(%qa, %qan) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, q_lora_rank = 3 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<3x4xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// q_a_norm must be [q_lora_rank].
func.func @la_q_a_norm(%x: tensor<1x2x8xf32>, %qa: tensor<3x8xf32>, %qan: tensor<8xf32>, %q: tensor<4x3xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{q_a_norm must be [q_lora_rank] = [3], got 'tensor<8xf32>'}}
  %r = dsv3.latent_attention %x q_a(%qa, %qan) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, q_lora_rank = 3 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<3x8xf32>, tensor<8xf32>, tensor<4x3xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// With q_lora_rank, q_proj (q_b_proj) must be [num_heads·(qk_nope+qk_rope), q_lora_rank].
func.func @la_q_b_proj(%x: tensor<1x2x8xf32>, %qa: tensor<3x8xf32>, %qan: tensor<3xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{q_proj (q_b_proj) must be [num_heads·(qk_nope+qk_rope), q_lora_rank] = [4, 3], got 'tensor<4x8xf32>'}}
  %r = dsv3.latent_attention %x q_a(%qa, %qan) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, q_lora_rank = 3 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<3x8xf32>, tensor<3xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// Without q_lora_rank, q_proj must be [num_heads·(qk_nope+qk_rope), hidden].
func.func @la_q_proj(%x: tensor<1x2x8xf32>, %q: tensor<6x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{q_proj must be [num_heads·(qk_nope+qk_rope), hidden] = [4, 8], got 'tensor<6x8xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<6x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// q_a_bias needs q_a_proj.
func.func @la_q_a_bias_no_qa(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>, %qab: tensor<3xf32>) {
  // expected-error @+1 {{q_a_bias needs q_a_proj (q_lora_rank)}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) q_a_bias(%qab)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>, tensor<3xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// kv_a_proj must be [kv_lora_rank + qk_rope_head_dim, hidden].
func.func @la_kv_a_proj(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<2x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{kv_a_proj must be [kv_lora_rank + qk_rope_head_dim, hidden] = [4, 8], got 'tensor<2x8xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<2x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// kv_a_norm must be [kv_lora_rank].
func.func @la_kv_a_norm(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<4xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{kv_a_norm must be [kv_lora_rank] = [2], got 'tensor<4xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// kv_b_proj must be [num_heads·(qk_nope+v_head_dim), kv_lora_rank].
func.func @la_kv_b_proj(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x4xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{kv_b_proj must be [num_heads·(qk_nope+v_head_dim), kv_lora_rank] = [4, 2], got 'tensor<4x4xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x4xf32>, tensor<8x2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// o_proj must be [hidden, num_heads·v_head_dim].
func.func @la_o_proj(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<2x8xf32>) {
  // expected-error @+1 {{o_proj must be [hidden, num_heads·v_head_dim] = [8, 2], got 'tensor<2x8xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<2x8xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// q_a_bias must be [q_lora_rank].
func.func @la_q_a_bias(%x: tensor<1x2x8xf32>, %qa: tensor<3x8xf32>, %qan: tensor<3xf32>, %q: tensor<4x3xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>, %qab: tensor<8xf32>) {
  // expected-error @+1 {{q_a_bias must be [q_lora_rank] = [3], got 'tensor<8xf32>'}}
  %r = dsv3.latent_attention %x q_a(%qa, %qan) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) q_a_bias(%qab)
      {num_heads = 1 : i64, q_lora_rank = 3 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<3x8xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>, tensor<8xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// kv_a_bias must be [kv_lora_rank + qk_rope_head_dim].
func.func @la_kv_a_bias(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>, %kvab: tensor<2xf32>) {
  // expected-error @+1 {{kv_a_bias must be [kv_lora_rank + qk_rope_head_dim] = [4], got 'tensor<2xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) kv_a_bias(%kvab)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>, tensor<2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// o_bias must be [hidden].
func.func @la_o_bias(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>, %ob: tensor<2xf32>) {
  // expected-error @+1 {{o_bias must be [hidden] = [8], got 'tensor<2xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) o_bias(%ob)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>, tensor<2xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

// The result must have the hidden shape.
func.func @la_result(%x: tensor<1x2x8xf32>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{result must be the hidden shape = [1, 2, 8], got 'tensor<1x3x8xf32>'}}
  %r = dsv3.latent_attention %x q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> tensor<1x3x8xf32>
  return
}

// -----

//===--- dsv3.latent_attention_decode ---===//
// The cache must be rank 3.
func.func @lad_cache_rank(%x: tensor<1x2x8xf32>, %cache: tensor<16x4xf32>, %past: tensor<1xi64>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{cache must have rank 3 ([batch, max_seq, kv_lora_rank + qk_rope_head_dim]), got 'tensor<16x4xf32>'}}
  %r, %c = dsv3.latent_attention_decode %x cache(%cache, %past) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<16x4xf32>, tensor<1xi64>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> (tensor<1x2x8xf32>, tensor<16x4xf32>)
  return
}

// -----

// The cache width must be kv_lora_rank + qk_rope_head_dim.
func.func @lad_cache_shape(%x: tensor<1x2x8xf32>, %cache: tensor<1x16x2xf32>, %past: tensor<1xi64>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{cache must be [batch, max_seq, kv_lora_rank + qk_rope_head_dim] = [1, 16, 4], got 'tensor<1x16x2xf32>'}}
  %r, %c = dsv3.latent_attention_decode %x cache(%cache, %past) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<1x16x2xf32>, tensor<1xi64>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> (tensor<1x2x8xf32>, tensor<1x16x2xf32>)
  return
}

// -----

// One past length per sequence.
func.func @lad_past_shape(%x: tensor<2x2x8xf32>, %cache: tensor<2x16x4xf32>, %past: tensor<3xi64>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{past_len must be [batch] = [2], got 'tensor<3xi64>'}}
  %r, %c = dsv3.latent_attention_decode %x cache(%cache, %past) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<2x2x8xf32>, tensor<2x16x4xf32>, tensor<3xi64>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> (tensor<2x2x8xf32>, tensor<2x16x4xf32>)
  return
}

// -----

// new_cache must have the cache type.
func.func @lad_new_cache(%x: tensor<1x2x8xf32>, %cache: tensor<1x16x4xf32>, %past: tensor<1xi64>, %q: tensor<4x8xf32>, %kva: tensor<4x8xf32>, %kvan: tensor<2xf32>, %kvb: tensor<4x2xf32>, %o: tensor<8x2xf32>) {
  // expected-error @+1 {{new_cache type 'tensor<1x?x4xf32>' must equal the cache type 'tensor<1x16x4xf32>'}}
  %r, %c = dsv3.latent_attention_decode %x cache(%cache, %past) q(%q) kv_a(%kva, %kvan) kv_b(%kvb) o(%o)
      {num_heads = 1 : i64, kv_lora_rank = 2 : i64, qk_nope_head_dim = 2 : i64, qk_rope_head_dim = 2 : i64, v_head_dim = 2 : i64, softmax_scale = 0.5 : f64, rope = #dsv3.rope<dim = 2, theta = 10000.0>}
      : (tensor<1x2x8xf32>, tensor<1x16x4xf32>, tensor<1xi64>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4x2xf32>, tensor<8x2xf32>) -> (tensor<1x2x8xf32>, tensor<1x?x4xf32>)
  return
}

// -----

//===--- dsv3.moe_route ---===//
// hidden must be rank 3.
func.func @route_hidden_rank(%x: tensor<2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{hidden must have rank 3 ([batch, seq, hidden]), got 'tensor<2x4xf32>'}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// gate_weight must have a static expert count.
func.func @route_gate_dynamic(%x: tensor<1x2x4xf32>, %gate: tensor<?x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{gate_weight must be [n_routed_experts, hidden] with a static expert count, got 'tensor<?x4xf32>'}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<?x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// gate_weight's hidden dimension must equal the hidden size.
func.func @route_gate_hidden(%x: tensor<1x2x4xf32>, %gate: tensor<8x6xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{gate_weight's hidden dimension (6) must equal the hidden size (4)}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x6xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// num_experts_per_tok must be positive.
func.func @route_k_positive(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{num_experts_per_tok (0) must be positive}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 0 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x0xi64>, tensor<1x2x0xf32>)
  return
}

// -----

// n_group must be positive.
func.func @route_n_group_positive(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{n_group (0) must be positive}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 0 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// topk_group must be positive.
func.func @route_topk_group_positive(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{topk_group (0) must be positive}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 0 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// num_experts_per_tok must be <= n_routed_experts.
func.func @route_k_le_experts(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>) {
  // expected-error @+1 {{num_experts_per_tok (9) must be <= n_routed_experts (8)}}
  %idx, %w = dsv3.moe_route softmax greedy %x, %gate {num_experts_per_tok = 9 : i64, n_group = 1 : i64, topk_group = 1 : i64, routed_scaling_factor = 1.0 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>) -> (tensor<1x2x9xi64>, tensor<1x2x9xf32>)
  return
}

// -----

// n_group must divide n_routed_experts.
func.func @route_n_group_divides(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{n_group (3) must divide n_routed_experts (8)}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 3 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// topk_group must be <= n_group.
func.func @route_topk_group_le(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{topk_group (3) must be <= n_group (2)}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 3 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// Grouped routing must keep at least num_experts_per_tok experts.
func.func @route_k_exceeds_kept(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>) {
  // expected-error @+1 {{num_experts_per_tok (3) exceeds the 2 experts of the topk_group (1) kept groups of 2 experts}}
  %idx, %w = dsv3.moe_route softmax group_limited_greedy %x, %gate {num_experts_per_tok = 3 : i64, n_group = 4 : i64, topk_group = 1 : i64, routed_scaling_factor = 1.0 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>) -> (tensor<1x2x3xi64>, tensor<1x2x3xf32>)
  return
}

// -----

// noaux_tc routing needs a correction bias.
func.func @route_noaux_no_bias(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>) {
  // expected-error @+1 {{noaux_tc routing needs a correction_bias operand}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// noaux_tc needs >= 2 experts per group.
func.func @route_noaux_group_size(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{noaux_tc ranks a group by the sum of its two best experts, so each group needs >= 2 experts; n_routed_experts (8) / n_group (8) = 1}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 8 : i64, topk_group = 2 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// Only noaux_tc routing takes a correction bias.
func.func @route_bias_not_noaux(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{correction_bias is only used by noaux_tc routing, not greedy}}
  %idx, %w = dsv3.moe_route softmax greedy %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, routed_scaling_factor = 1.0 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// correction_bias must be [n_routed_experts].
func.func @route_bias_shape(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{correction_bias must be [n_routed_experts] = [8], got 'tensor<4xf32>'}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<4xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// routed_scaling_factor must be positive.
func.func @route_scale(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{routed_scaling_factor (0.000000e+00) must be positive}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 0.0 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// indices must be [batch, seq, num_experts_per_tok].
func.func @route_indices(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{indices must be [batch, seq, num_experts_per_tok] = [1, 2, 2], got 'tensor<1x2x3xi64>'}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x3xi64>, tensor<1x2x2xf32>)
  return
}

// -----

// weights must be [batch, seq, num_experts_per_tok].
func.func @route_weights(%x: tensor<1x2x4xf32>, %gate: tensor<8x4xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{weights must be [batch, seq, num_experts_per_tok] = [1, 2, 2], got 'tensor<2x2x2xf32>'}}
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %x, %gate bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x2x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> (tensor<1x2x2xi64>, tensor<2x2x2xf32>)
  return
}

// -----

//===--- dsv3.moe_dispatch ---===//
// hidden must be rank 3.
func.func @dispatch_hidden_rank(%x: tensor<2x4xf32>, %idx: tensor<1x2x2xi64>) {
  // expected-error @+1 {{hidden must have rank 3 ([batch, seq, hidden]), got 'tensor<2x4xf32>'}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 8 : (tensor<2x4xf32>, tensor<1x2x2xi64>) -> (tensor<4x4xf32>, tensor<8xi64>, tensor<4xi64>)
  return
}

// -----

// indices must be rank 3.
func.func @dispatch_indices_rank(%x: tensor<1x2x4xf32>, %idx: tensor<2x2xi64>) {
  // expected-error @+1 {{indices must have rank 3 ([batch, seq, top_k]), got 'tensor<2x2xi64>'}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 8 : (tensor<1x2x4xf32>, tensor<2x2xi64>) -> (tensor<4x4xf32>, tensor<8xi64>, tensor<4xi64>)
  return
}

// -----

// num_experts must be positive.
func.func @dispatch_num_experts(%x: tensor<1x2x4xf32>, %idx: tensor<1x2x2xi64>) {
  // expected-error @+1 {{num_experts (0) must be positive}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 0 : (tensor<1x2x4xf32>, tensor<1x2x2xi64>) -> (tensor<4x4xf32>, tensor<0xi64>, tensor<4xi64>)
  return
}

// -----

// indices must have the batch and seq of hidden.
func.func @dispatch_indices_batch_seq(%x: tensor<1x2x4xf32>, %idx: tensor<1x3x2xi64>) {
  // expected-error @+1 {{indices 'tensor<1x3x2xi64>' must have the batch and seq dimensions of hidden 'tensor<1x2x4xf32>'}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 8 : (tensor<1x2x4xf32>, tensor<1x3x2xi64>) -> (tensor<4x4xf32>, tensor<8xi64>, tensor<4xi64>)
  return
}

// -----

// rows must be [batch·seq·top_k, hidden].
func.func @dispatch_rows(%x: tensor<1x2x4xf32>, %idx: tensor<1x2x2xi64>) {
  // expected-error @+1 {{rows must be [batch·seq·top_k, hidden] = [4, 4], got 'tensor<5x4xf32>'}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 8 : (tensor<1x2x4xf32>, tensor<1x2x2xi64>) -> (tensor<5x4xf32>, tensor<8xi64>, tensor<4xi64>)
  return
}

// -----

// counts must be [num_experts].
func.func @dispatch_counts(%x: tensor<1x2x4xf32>, %idx: tensor<1x2x2xi64>) {
  // expected-error @+1 {{counts must be [num_experts] = [8], got 'tensor<4xi64>'}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 8 : (tensor<1x2x4xf32>, tensor<1x2x2xi64>) -> (tensor<4x4xf32>, tensor<4xi64>, tensor<4xi64>)
  return
}

// -----

// slots must be [rows].
func.func @dispatch_slots(%x: tensor<1x2x4xf32>, %idx: tensor<1x2x2xi64>) {
  // expected-error @+1 {{slots must be [rows] = [4], got 'tensor<3xi64>'}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 8 : (tensor<1x2x4xf32>, tensor<1x2x2xi64>) -> (tensor<4x4xf32>, tensor<8xi64>, tensor<3xi64>)
  return
}

// -----

// rows must have the hidden element type.
func.func @dispatch_rows_elt(%x: tensor<1x2x4xf32>, %idx: tensor<1x2x2xi64>) {
  // expected-error @+1 {{rows element type 'bf16' must equal the hidden element type 'f32'}}
  %rows, %counts, %slots = dsv3.moe_dispatch %x, %idx experts 8 : (tensor<1x2x4xf32>, tensor<1x2x2xi64>) -> (tensor<4x4xbf16>, tensor<8xi64>, tensor<4xi64>)
  return
}

// -----

//===--- dsv3.expert_grouped_matmul ---===//
// rows must be rank 2.
func.func @egm_rows_rank(%rows: tensor<1x4x4xf32>, %w: tensor<8x6x4xf32>, %counts: tensor<8xi64>) {
  // expected-error @+1 {{rows must be [rows, in], got 'tensor<1x4x4xf32>'}}
  %y = dsv3.expert_grouped_matmul %rows, %w, %counts : (tensor<1x4x4xf32>, tensor<8x6x4xf32>, tensor<8xi64>) -> tensor<4x6xf32>
  return
}

// -----

// weight must be rank 3.
func.func @egm_weight_rank(%rows: tensor<4x4xf32>, %w: tensor<6x4xf32>, %counts: tensor<8xi64>) {
  // expected-error @+1 {{weight must be [experts, out, in], got 'tensor<6x4xf32>'}}
  %y = dsv3.expert_grouped_matmul %rows, %w, %counts : (tensor<4x4xf32>, tensor<6x4xf32>, tensor<8xi64>) -> tensor<4x6xf32>
  return
}

// -----

// rows' features must equal the weight's in dimension.
func.func @egm_in(%rows: tensor<4x5xf32>, %w: tensor<8x6x4xf32>, %counts: tensor<8xi64>) {
  // expected-error @+1 {{rows' feature dimension (5) must equal the weight's in dimension (4)}}
  %y = dsv3.expert_grouped_matmul %rows, %w, %counts : (tensor<4x5xf32>, tensor<8x6x4xf32>, tensor<8xi64>) -> tensor<4x6xf32>
  return
}

// -----

// counts must be [experts].
func.func @egm_counts(%rows: tensor<4x4xf32>, %w: tensor<8x6x4xf32>, %counts: tensor<4xi64>) {
  // expected-error @+1 {{counts must be [experts] = [8], got 'tensor<4xi64>'}}
  %y = dsv3.expert_grouped_matmul %rows, %w, %counts : (tensor<4x4xf32>, tensor<8x6x4xf32>, tensor<4xi64>) -> tensor<4x6xf32>
  return
}

// -----

// The result must be [rows, out].
func.func @egm_result(%rows: tensor<4x4xf32>, %w: tensor<8x6x4xf32>, %counts: tensor<8xi64>) {
  // expected-error @+1 {{result must be [rows, out] = [4, 6], got 'tensor<4x4xf32>'}}
  %y = dsv3.expert_grouped_matmul %rows, %w, %counts : (tensor<4x4xf32>, tensor<8x6x4xf32>, tensor<8xi64>) -> tensor<4x4xf32>
  return
}

// -----

// The result must have the rows' element type.
func.func @egm_result_elt(%rows: tensor<4x4xf32>, %w: tensor<8x6x4xf32>, %counts: tensor<8xi64>) {
  // expected-error @+1 {{result element type 'bf16' must equal the rows element type 'f32'}}
  %y = dsv3.expert_grouped_matmul %rows, %w, %counts : (tensor<4x4xf32>, tensor<8x6x4xf32>, tensor<8xi64>) -> tensor<4x6xbf16>
  return
}

// -----

//===--- dsv3.moe_combine ---===//
// expert_out must be rank 2.
func.func @combine_out_rank(%out: tensor<1x4x6xf32>, %slots: tensor<4xi64>, %w: tensor<1x2x2xf32>) {
  // expected-error @+1 {{expert_out must be [rows, hidden], got 'tensor<1x4x6xf32>'}}
  %y = dsv3.moe_combine %out, %slots, %w : (tensor<1x4x6xf32>, tensor<4xi64>, tensor<1x2x2xf32>) -> tensor<1x2x6xf32>
  return
}

// -----

// slots must be [rows].
func.func @combine_slots(%out: tensor<4x6xf32>, %slots: tensor<5xi64>, %w: tensor<1x2x2xf32>) {
  // expected-error @+1 {{slots must be [rows] = [4], got 'tensor<5xi64>'}}
  %y = dsv3.moe_combine %out, %slots, %w : (tensor<4x6xf32>, tensor<5xi64>, tensor<1x2x2xf32>) -> tensor<1x2x6xf32>
  return
}

// -----

// weights must be rank 3.
func.func @combine_weights_rank(%out: tensor<4x6xf32>, %slots: tensor<4xi64>, %w: tensor<2x2xf32>) {
  // expected-error @+1 {{weights must have rank 3 ([batch, seq, top_k]), got 'tensor<2x2xf32>'}}
  %y = dsv3.moe_combine %out, %slots, %w : (tensor<4x6xf32>, tensor<4xi64>, tensor<2x2xf32>) -> tensor<1x2x6xf32>
  return
}

// -----

// expert_out must have one row per (token, k).
func.func @combine_rows(%out: tensor<6x6xf32>, %slots: tensor<6xi64>, %w: tensor<1x2x2xf32>) {
  // expected-error @+1 {{expert_out has 6 rows but the weights select 4 (batch·seq·top_k)}}
  %y = dsv3.moe_combine %out, %slots, %w : (tensor<6x6xf32>, tensor<6xi64>, tensor<1x2x2xf32>) -> tensor<1x2x6xf32>
  return
}

// -----

// The result must be [batch, seq, hidden].
func.func @combine_result(%out: tensor<4x6xf32>, %slots: tensor<4xi64>, %w: tensor<1x2x2xf32>) {
  // expected-error @+1 {{result must be [batch, seq, hidden] = [1, 2, 6], got 'tensor<1x2x4xf32>'}}
  %y = dsv3.moe_combine %out, %slots, %w : (tensor<4x6xf32>, tensor<4xi64>, tensor<1x2x2xf32>) -> tensor<1x2x4xf32>
  return
}

// -----

// The result must have the expert_out element type.
func.func @combine_result_elt(%out: tensor<4x6xf32>, %slots: tensor<4xi64>, %w: tensor<1x2x2xf32>) {
  // expected-error @+1 {{result element type 'bf16' must equal the expert_out element type 'f32'}}
  %y = dsv3.moe_combine %out, %slots, %w : (tensor<4x6xf32>, tensor<4xi64>, tensor<1x2x2xf32>) -> tensor<1x2x6xbf16>
  return
}

// -----

//===--- dsv3.mtp ---===//
// embeds must be rank 3.
func.func @mtp_embeds_rank(%h: tensor<1x4x4xf32>, %e: tensor<4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{embeds must have rank 3 ([batch, seq, hidden]), got 'tensor<4x4xf32>'}}
  %m = dsv3.mtp depth 1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x4x4xf32>, tensor<4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x3x4xf32>
  return
}

// -----

// depth must be >= 1.
func.func @mtp_depth(%h: tensor<1x4x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{depth must be >= 1, got 0}}
  %m = dsv3.mtp depth 0 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x4x4xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x4x4xf32>
  return
}

// -----

// depth must leave at least one row.
func.func @mtp_no_rows(%h: tensor<1x4x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{depth 4 leaves no rows of a sequence of 4}}
  %m = dsv3.mtp depth 4 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x4x4xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x0x4xf32>
  return
}

// -----

// hidden must be rank 3.
func.func @mtp_hidden_rank(%h: tensor<4x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{hidden must have rank 3 ([batch, rows, hidden]), got 'tensor<4x4xf32>'}}
  %m = dsv3.mtp depth 1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<4x4xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x3x4xf32>
  return
}

// -----

// hidden must have the embeds' batch and hidden.
func.func @mtp_hidden_shape(%h: tensor<1x4x6xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{hidden must be [batch, rows, hidden] with the embeds' batch and hidden = [1, 4, 4], got 'tensor<1x4x6xf32>'}}
  %m = dsv3.mtp depth 1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x4x6xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x3x4xf32>
  return
}

// -----

// hidden must have at least seq - depth rows.
func.func @mtp_hidden_rows(%h: tensor<1x2x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{hidden has 2 rows but depth 1 of a sequence of 4 needs 3}}
  %m = dsv3.mtp depth 1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x2x4xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x3x4xf32>
  return
}

// -----

// enorm must be [hidden].
func.func @mtp_enorm(%h: tensor<1x4x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<8xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{enorm must be [hidden] = [4], got 'tensor<8xf32>'}}
  %m = dsv3.mtp depth 1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x4x4xf32>, tensor<1x4x4xf32>, tensor<8xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x3x4xf32>
  return
}

// -----

// hnorm must be [hidden].
func.func @mtp_hnorm(%h: tensor<1x4x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<8xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{hnorm must be [hidden] = [4], got 'tensor<8xf32>'}}
  %m = dsv3.mtp depth 1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x4x4xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<8xf32>, tensor<4x8xf32>) -> tensor<1x3x4xf32>
  return
}

// -----

// eh_proj must be [hidden, 2·hidden].
func.func @mtp_eh_proj(%h: tensor<1x4x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x4xf32>) {
  // expected-error @+1 {{eh_proj must be [hidden, 2·hidden] = [4, 8], got 'tensor<4x4xf32>'}}
  %m = dsv3.mtp depth 1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x4x4xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x4xf32>) -> tensor<1x3x4xf32>
  return
}

// -----

// The result must be [batch, seq - depth, hidden].
func.func @mtp_result(%h: tensor<1x4x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{result must be [batch, seq - depth, hidden] = [1, 3, 4], got 'tensor<1x4x4xf32>'}}
  %m = dsv3.mtp depth 1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x4x4xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x4x4xf32>
  return
}

// -----

//===--- dsv3.last_token ---===//
// One position a sequence: [batch, 1, hidden].
func.func @last_token_shape(%h: tensor<2x8x16xf32>) {
  // expected-error @+1 {{result must be [batch, 1, hidden]}}
  %l = dsv3.last_token %h : tensor<2x8x16xf32> -> tensor<2x8x16xf32>
  return
}

// -----

//===--- dsv3.lm_head ---===//
// hidden must be rank 3.
func.func @lm_head_hidden_rank(%h: tensor<2x4xf32>, %w: tensor<16x4xf32>) {
  // expected-error @+1 {{hidden must have rank 3 ([batch, seq, hidden]), got 'tensor<2x4xf32>'}}
  %l = dsv3.lm_head %h, %w : (tensor<2x4xf32>, tensor<16x4xf32>) -> tensor<1x2x16xf32>
  return
}

// -----

// weight must be [vocab, hidden].
func.func @lm_head_weight(%h: tensor<1x2x4xf32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{weight must be [vocab, hidden] with hidden = 4, got 'tensor<16x8xf32>'}}
  %l = dsv3.lm_head %h, %w : (tensor<1x2x4xf32>, tensor<16x8xf32>) -> tensor<1x2x16xf32>
  return
}

// -----

// logits must be [batch, seq, vocab].
func.func @lm_head_logits(%h: tensor<1x2x4xf32>, %w: tensor<16x4xf32>) {
  // expected-error @+1 {{logits must be [batch, seq, vocab] = [1, 2, 16], got 'tensor<1x2x8xf32>'}}
  %l = dsv3.lm_head %h, %w : (tensor<1x2x4xf32>, tensor<16x4xf32>) -> tensor<1x2x8xf32>
  return
}

// -----

//===--- dsv3.cross_entropy ---===//
// logits must be rank 3.
func.func @ce_logits_rank(%l: tensor<3x16xf32>, %ids: tensor<1x4xi64>) {
  // expected-error @+1 {{logits must have rank 3 ([batch, rows, vocab]), got 'tensor<3x16xf32>'}}
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<3x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return
}

// -----

// labels must be rank 2.
func.func @ce_labels_rank(%l: tensor<1x3x16xf32>, %ids: tensor<4xi64>) {
  // expected-error @+1 {{labels must have rank 2 ([batch, seq]), got 'tensor<4xi64>'}}
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x3x16xf32>, tensor<4xi64>) -> tensor<f32>
  return
}

// -----

// logits and labels must have the same batch.
func.func @ce_batch(%l: tensor<1x3x16xf32>, %ids: tensor<2x4xi64>) {
  // expected-error @+1 {{logits batch (1) must equal labels batch (2)}}
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x3x16xf32>, tensor<2x4xi64>) -> tensor<f32>
  return
}

// -----

// logits must not have more rows than labels have positions.
func.func @ce_rows(%l: tensor<1x5x16xf32>, %ids: tensor<1x4xi64>) {
  // expected-error @+1 {{logits have 5 rows but labels only 4 positions}}
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x5x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return
}

// -----

// shift must not be negative.
func.func @ce_shift(%l: tensor<1x3x16xf32>, %ids: tensor<1x4xi64>) {
  // expected-error @+1 {{shift must be >= 0, got -1}}
  %c = dsv3.cross_entropy %l, %ids shift -1 scale 1.0 : (tensor<1x3x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return
}

// -----

//===--- dsv3.lm_head_cross_entropy ---===//
// The weight's columns must be the hidden size.
func.func @lmce_weight(%h: tensor<1x3x16xf32>, %w: tensor<32x8xf32>, %ids: tensor<1x4xi64>) {
  // expected-error @+1 {{weight must be [vocab, hidden] with hidden = 16, got 'tensor<32x8xf32>'}}
  %c = dsv3.lm_head_cross_entropy %h, %w, %ids shift 1 scale 1.0 : (tensor<1x3x16xf32>, tensor<32x8xf32>, tensor<1x4xi64>) -> tensor<f32>
  return
}

// -----

// hidden and labels must have the same batch.
func.func @lmce_batch(%h: tensor<1x3x16xf32>, %w: tensor<32x16xf32>, %ids: tensor<2x4xi64>) {
  // expected-error @+1 {{hidden batch (1) must equal labels batch (2)}}
  %c = dsv3.lm_head_cross_entropy %h, %w, %ids shift 1 scale 1.0 : (tensor<1x3x16xf32>, tensor<32x16xf32>, tensor<2x4xi64>) -> tensor<f32>
  return
}

// -----

// hidden must not have more rows than labels have positions.
func.func @lmce_rows(%h: tensor<1x5x16xf32>, %w: tensor<32x16xf32>, %ids: tensor<1x4xi64>) {
  // expected-error @+1 {{hidden has 5 rows but labels only 4 positions}}
  %c = dsv3.lm_head_cross_entropy %h, %w, %ids shift 1 scale 1.0 : (tensor<1x5x16xf32>, tensor<32x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return
}

// -----

// shift must not be negative.
func.func @lmce_shift(%h: tensor<1x3x16xf32>, %w: tensor<32x16xf32>, %ids: tensor<1x4xi64>) {
  // expected-error @+1 {{shift must be >= 0, got -1}}
  %c = dsv3.lm_head_cross_entropy %h, %w, %ids shift -1 scale 1.0 : (tensor<1x3x16xf32>, tensor<32x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return
}

// -----

// A negative depth is rejected (not wrapped around).
func.func @mtp_negative_depth(%h: tensor<1x5x4xf32>, %e: tensor<1x4x4xf32>, %en: tensor<4xf32>, %hn: tensor<4xf32>, %eh: tensor<4x8xf32>) {
  // expected-error @+1 {{depth must be >= 1, got -1}}
  %m = dsv3.mtp depth -1 %h, %e, %en, %hn, %eh eps 1.0e-6 : (tensor<1x5x4xf32>, tensor<1x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4x8xf32>) -> tensor<1x5x4xf32>
  return
}

// -----

// fill needs a static shape.
func.func @fill_dynamic() {
  // expected-error @+1 {{result must have a static shape, got 'tensor<?xf32>'}}
  %z = dsv3.fill 0.0 : tensor<?xf32>
  return
}

// -----

// One result per listed gradient operand.
func.func @vjp_count(%x: tensor<4xf32>, %dy: tensor<4xf32>) {
  // expected-error @+1 {{lists 2 gradient operands but has 1 results}}
  %g = dsv3.vjp "swiglu" (%x, %x) cotangents(%dy) grads [0, 1] params {} : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

// Gradient operands are increasing indices of the primals.
func.func @vjp_indices(%x: tensor<4xf32>, %dy: tensor<4xf32>) {
  // expected-error @+1 {{grad_operands must be increasing indices of primals (0..2), got 2}}
  %g = dsv3.vjp "swiglu" (%x, %x) cotangents(%dy) grads [2] params {} : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

// Each gradient has its primal's type.
func.func @vjp_type(%x: tensor<4xf32>, %y: tensor<8xf32>, %dy: tensor<4xf32>) {
  // expected-error @+1 {{gradient 0 has type 'tensor<4xf32>' but primal 1 has type 'tensor<8xf32>'}}
  %g = dsv3.vjp "swiglu" (%x, %y) cotangents(%dy) grads [1] params {} : (tensor<4xf32>, tensor<8xf32>, tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

// A vjp needs a cotangent.
func.func @vjp_no_cotangent(%x: tensor<4xf32>) {
  // expected-error @+1 {{needs at least one cotangent}}
  %g = dsv3.vjp "swiglu" (%x, %x) cotangents() grads [0] params {} : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @global_norm_empty() {
  // expected-error @+1 {{needs at least one tensor}}
  %n = "dsv3.global_norm"() : () -> tensor<f32>
  return
}

// -----

dsv3.param @"w" norm : tensor<4xf32>
dsv3.param @"m" optimizer_state : tensor<4xf32>
dsv3.param @"v" norm : tensor<4xf32>
func.func @adamw_state_role(%g: tensor<4xf32>, %s: i64, %lr: tensor<f32>, %n: tensor<f32>) {
  // expected-error @+1 {{exp_avg_sq @v must have role optimizer_state}}
  dsv3.adamw @w, @m, @v grad %g step %s lr %lr norm %n {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-8 : f64, weight_decay = 0.1 : f64, max_grad_norm = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

dsv3.param @"w" norm : tensor<4xf32>
dsv3.param @"m" optimizer_state : tensor<8xf32>
dsv3.param @"v" optimizer_state : tensor<4xf32>
func.func @adamw_state_type(%g: tensor<4xf32>, %s: i64, %lr: tensor<f32>, %n: tensor<f32>) {
  // expected-error @+1 {{exp_avg @m has type 'tensor<8xf32>', expected 'tensor<4xf32>'}}
  dsv3.adamw @w, @m, @v grad %g step %s lr %lr norm %n {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-8 : f64, weight_decay = 0.1 : f64, max_grad_norm = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

dsv3.param @"w" norm : tensor<4xf32>
dsv3.param @"m" optimizer_state : tensor<4xbf16>
dsv3.param @"v" optimizer_state : tensor<4xf32>
func.func @adamw_mixed_state_types(%g: tensor<4xf32>, %s: i64, %lr: tensor<f32>, %n: tensor<f32>) {
  // bf16 moments are both bf16 (the first moment's type is the one expected).
  // expected-error @+1 {{exp_avg_sq @v has type 'tensor<4xf32>', expected 'tensor<4xbf16>'}}
  dsv3.adamw @w, @m, @v grad %g step %s lr %lr norm %n {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-8 : f64, weight_decay = 0.1 : f64, max_grad_norm = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

dsv3.param @"m" optimizer_state : tensor<4xf32>
func.func @adamw_no_param(%g: tensor<4xf32>, %s: i64, %lr: tensor<f32>, %n: tensor<f32>) {
  // expected-error @+1 {{param @nothing does not name a dsv3.param}}
  dsv3.adamw @nothing, @m, @m grad %g step %s lr %lr norm %n {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-8 : f64, weight_decay = 0.1 : f64, max_grad_norm = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @adamw_betas(%g: tensor<4xf32>, %s: i64, %lr: tensor<f32>, %n: tensor<f32>) {
  // expected-error @+1 {{betas (1.000000e+00, 9.500000e-01) must lie in [0, 1)}}
  dsv3.adamw @w, @m, @v grad %g step %s lr %lr norm %n {beta1 = 1.0 : f64, beta2 = 0.95 : f64, eps = 1.0e-8 : f64, weight_decay = 0.1 : f64, max_grad_norm = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @adamw_eps(%g: tensor<4xf32>, %s: i64, %lr: tensor<f32>, %n: tensor<f32>) {
  // expected-error @+1 {{eps (0.000000e+00) must be positive}}
  dsv3.adamw @w, @m, @v grad %g step %s lr %lr norm %n {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 0.0 : f64, weight_decay = 0.1 : f64, max_grad_norm = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @adamw_decay(%g: tensor<4xf32>, %s: i64, %lr: tensor<f32>, %n: tensor<f32>) {
  // expected-error @+1 {{weight_decay and max_grad_norm must be >= 0}}
  dsv3.adamw @w, @m, @v grad %g step %s lr %lr norm %n {beta1 = 0.9 : f64, beta2 = 0.95 : f64, eps = 1.0e-8 : f64, weight_decay = -0.1 : f64, max_grad_norm = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

dsv3.param @"b" norm : tensor<4xf32>
func.func @bias_update_role(%c: tensor<4xi64>) {
  // expected-error @+1 {{@b must name a dsv3.param of role router_bias}}
  dsv3.expert_bias_update @b counts %c rate 1.0e-3 : tensor<4xi64>
  return
}

// -----

dsv3.param @"b" router_bias : tensor<8xf32>
func.func @bias_update_count(%c: tensor<4xi64>) {
  // expected-error @+1 {{counts of 4 experts for bias 'tensor<8xf32>'}}
  dsv3.expert_bias_update @b counts %c rate 1.0e-3 : tensor<4xi64>
  return
}

// -----

func.func @balance_hidden_rank(%x: tensor<3x16xf32>, %g: tensor<4x16xf32>, %i: tensor<1x3x2xi64>) {
  // expected-error @+1 {{hidden must have rank 3 ([batch, seq, hidden])}}
  %b = dsv3.moe_balance_loss sigmoid %x, %g, %i {alpha = 1.0e-4 : f64} : (tensor<3x16xf32>, tensor<4x16xf32>, tensor<1x3x2xi64>) -> tensor<f32>
  return
}

// -----

func.func @balance_gate(%x: tensor<1x3x16xf32>, %g: tensor<4x8xf32>, %i: tensor<1x3x2xi64>) {
  // expected-error @+1 {{gate_weight must be [n_routed_experts, hidden] with hidden = 16, got 'tensor<4x8xf32>'}}
  %b = dsv3.moe_balance_loss sigmoid %x, %g, %i {alpha = 1.0e-4 : f64} : (tensor<1x3x16xf32>, tensor<4x8xf32>, tensor<1x3x2xi64>) -> tensor<f32>
  return
}

// -----

func.func @balance_indices(%x: tensor<1x3x16xf32>, %g: tensor<4x16xf32>, %i: tensor<1x5x2xi64>) {
  // expected-error @+1 {{must have the batch and seq dimensions of hidden}}
  %b = dsv3.moe_balance_loss sigmoid %x, %g, %i {alpha = 1.0e-4 : f64} : (tensor<1x3x16xf32>, tensor<4x16xf32>, tensor<1x5x2xi64>) -> tensor<f32>
  return
}

// -----

func.func @balance_alpha(%x: tensor<1x3x16xf32>, %g: tensor<4x16xf32>, %i: tensor<1x3x2xi64>) {
  // expected-error @+1 {{alpha (-1.000000e+00) must be >= 0}}
  %b = dsv3.moe_balance_loss sigmoid %x, %g, %i {alpha = -1.0 : f64} : (tensor<1x3x16xf32>, tensor<4x16xf32>, tensor<1x3x2xi64>) -> tensor<f32>
  return
}

// -----

func.func @balance_softmax_sequence(%x: tensor<1x3x16xf32>, %g: tensor<4x16xf32>, %i: tensor<1x3x2xi64>) {
  // expected-error @+1 {{the sequence-wise loss normalises sigmoid scores; softmax routing uses the expert-level loss}}
  %b = dsv3.moe_balance_loss softmax %x, %g, %i {alpha = 1.0e-4 : f64, sequence_wise} : (tensor<1x3x16xf32>, tensor<4x16xf32>, tensor<1x3x2xi64>) -> tensor<f32>
  return
}

// -----

func.func @gated_input_rank(%x: tensor<f32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{input must have rank >= 1}}
  %a = dsv3.gated_linear %x, %w, %w : (tensor<f32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<16xf32>
  return
}

// -----

func.func @gated_weight_rank(%x: tensor<4x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{gate_weight must be [out, in], got 'tensor<8xf32>'}}
  %a = dsv3.gated_linear %x, %w, %w : (tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @gated_up_type(%x: tensor<4x8xf32>, %wg: tensor<16x8xf32>, %wu: tensor<12x8xf32>) {
  // expected-error @+1 {{up_weight 'tensor<12x8xf32>' must have the gate_weight's type 'tensor<16x8xf32>'}}
  %a = dsv3.gated_linear %x, %wg, %wu : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<12x8xf32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @gated_features(%x: tensor<4x6xf32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{input features (6) must equal the weights' in dimension (8)}}
  %a = dsv3.gated_linear %x, %w, %w : (tensor<4x6xf32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @gated_result(%x: tensor<4x8xf32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{result must be input shape with the last dimension = out = [4, 16], got 'tensor<4x12xf32>'}}
  %a = dsv3.gated_linear %x, %w, %w : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<4x12xf32>
  return
}

// -----

func.func @egated_rows(%r: tensor<8xf32>, %w: tensor<4x16x8xf32>, %c: tensor<4xi64>) {
  // expected-error @+1 {{rows must be [rows, in], got 'tensor<8xf32>'}}
  %a = dsv3.expert_gated_matmul %r, %w, %w, %c : (tensor<8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
  return
}

// -----

func.func @egated_weight(%r: tensor<?x8xf32>, %w: tensor<16x8xf32>, %c: tensor<4xi64>) {
  // expected-error @+1 {{gate_weight must be [experts, out, in], got 'tensor<16x8xf32>'}}
  %a = dsv3.expert_gated_matmul %r, %w, %w, %c : (tensor<?x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
  return
}

// -----

func.func @egated_up(%r: tensor<?x8xf32>, %wg: tensor<4x16x8xf32>, %wu: tensor<4x12x8xf32>, %c: tensor<4xi64>) {
  // expected-error @+1 {{up_weight 'tensor<4x12x8xf32>' must have the gate_weight's type 'tensor<4x16x8xf32>'}}
  %a = dsv3.expert_gated_matmul %r, %wg, %wu, %c : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4x12x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
  return
}

// -----

func.func @egated_features(%r: tensor<?x6xf32>, %w: tensor<4x16x8xf32>, %c: tensor<4xi64>) {
  // expected-error @+1 {{rows' feature dimension (6) must equal the weights' in dimension (8)}}
  %a = dsv3.expert_gated_matmul %r, %w, %w, %c : (tensor<?x6xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
  return
}

// -----

func.func @egated_counts(%r: tensor<?x8xf32>, %w: tensor<4x16x8xf32>, %c: tensor<3xi64>) {
  // expected-error @+1 {{counts must be [experts] = [4], got 'tensor<3xi64>'}}
  %a = dsv3.expert_gated_matmul %r, %w, %w, %c : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<3xi64>) -> tensor<?x16xf32>
  return
}

// -----

func.func @egated_result(%r: tensor<?x8xf32>, %w: tensor<4x16x8xf32>, %c: tensor<4xi64>) {
  // expected-error @+1 {{result must be [rows, out] = [?, 16], got 'tensor<?x12xf32>'}}
  %a = dsv3.expert_gated_matmul %r, %w, %w, %c : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x12xf32>
  return
}

// -----

func.func @linear_add_rank(%x: tensor<f32>, %w: tensor<8x16xf32>, %r: tensor<8xf32>) {
  // expected-error @+1 {{input must have rank >= 1}}
  %y = dsv3.linear_add %x, %w, %r : (tensor<f32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<8xf32>
  return
}

// -----

func.func @linear_add_weight(%x: tensor<4x16xf32>, %w: tensor<16xf32>, %r: tensor<4x8xf32>) {
  // expected-error @+1 {{weight must be [out, in], got 'tensor<16xf32>'}}
  %y = dsv3.linear_add %x, %w, %r : (tensor<4x16xf32>, tensor<16xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @linear_add_features(%x: tensor<4x12xf32>, %w: tensor<8x16xf32>, %r: tensor<4x8xf32>) {
  // expected-error @+1 {{input features (12) must equal the weight's in dimension (16)}}
  %y = dsv3.linear_add %x, %w, %r : (tensor<4x12xf32>, tensor<8x16xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @linear_add_residual(%x: tensor<4x16xf32>, %w: tensor<8x16xf32>, %r: tensor<4x6xf32>) {
  // expected-error @+1 {{residual must be input shape with the last dimension = out = [4, 8], got 'tensor<4x6xf32>'}}
  %y = dsv3.linear_add %x, %w, %r : (tensor<4x16xf32>, tensor<8x16xf32>, tensor<4x6xf32>) -> tensor<4x6xf32>
  return
}

// -----

//===--- dsv3.norm_linear / dsv3.norm_gated_linear ---===//
// The prologue norm's weight has the input's feature count.
func.func @norm_linear_weight(%x: tensor<4x8xf32>, %wn: tensor<6xf32>, %w: tensor<16x8xf32>) -> tensor<4x16xf32> {
  // expected-error @+1 {{norm_weight must be [input features] = [8], got 'tensor<6xf32>'}}
  %y = dsv3.norm_linear %x, %wn, %w eps 1.0e-06 : (tensor<4x8xf32>, tensor<6xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// -----

func.func @norm_linear_eps(%x: tensor<4x8xf32>, %wn: tensor<8xf32>, %w: tensor<16x8xf32>) -> tensor<4x16xf32> {
  // expected-error @+1 {{epsilon (0.000000e+00) must be positive}}
  %y = dsv3.norm_linear %x, %wn, %w eps 0.0 : (tensor<4x8xf32>, tensor<8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// -----

func.func @norm_gated_linear_up(%x: tensor<4x8xf32>, %wn: tensor<8xf32>, %wg: tensor<16x8xf32>, %wu: tensor<12x8xf32>) -> tensor<4x16xf32> {
  // expected-error @+1 {{up_weight 'tensor<12x8xf32>' must have the gate_weight's type 'tensor<16x8xf32>'}}
  %y = dsv3.norm_gated_linear %x, %wn, %wg, %wu eps 1.0e-06 : (tensor<4x8xf32>, tensor<8xf32>, tensor<16x8xf32>, tensor<12x8xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// -----

//===--- dsv3.ep_dispatch / dsv3.ep_combine / dsv3.all_reduce ---===//

func.func @ep_uneven(%rows: tensor<?x8xf32>, %c: tensor<5xi64>) {
  // expected-error @below {{counts 'tensor<5xi64>' must hold a static number of experts divisible by the 2 ranks}}
  %local, %lc, %layout = dsv3.ep_dispatch %rows, %c ranks 2 : (tensor<?x8xf32>, tensor<5xi64>) -> (tensor<?x8xf32>, tensor<2xi64>, tensor<2x2xi64>)
  return
}

// -----

func.func @ep_layout(%rows: tensor<?x8xf32>, %c: tensor<4xi64>) {
  // expected-error @below {{layout must be [ranks, experts / ranks] = [2, 2], got 'tensor<2x4xi64>'}}
  %local, %lc, %layout = dsv3.ep_dispatch %rows, %c ranks 2 : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<2xi64>, tensor<2x4xi64>)
  return
}

// -----

func.func @ep_combine_width(%y: tensor<?x8xf32>, %layout: tensor<2x2xi64>, %c: tensor<4xi64>) {
  // expected-error @below {{result must be [?, hidden] = [?, 8], got 'tensor<?x4xf32>'}}
  %back = dsv3.ep_combine %y, %layout, %c ranks 2 : (tensor<?x8xf32>, tensor<2x2xi64>, tensor<4xi64>) -> tensor<?x4xf32>
  return
}

// -----

func.func @all_reduce_kind(%g: tensor<4xf32>) {
  // expected-error @below {{reduction must be 'sum' or 'mean', got 'max'}}
  %r = dsv3.all_reduce "max" over "data" 2 %g : tensor<4xf32>
  return
}

// -----

func.func @all_reduce_int_mean(%g: tensor<4xi64>) {
  // expected-error @below {{a mean needs a floating-point tensor, got 'tensor<4xi64>'}}
  %r = dsv3.all_reduce "mean" over "data" 2 %g : tensor<4xi64>
  return
}

// -----

func.func @ep_capacity(%rows: tensor<?x8xf32>, %c: tensor<4xi64>) {
  // expected-error @below {{capacity must be >= 1 (a rank keeps at least its own rows' worth), got 5.000000e-01}}
  %local, %lc, %layout = dsv3.ep_dispatch %rows, %c ranks 2 capacity 0.5 : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<2xi64>, tensor<2x2xi64>)
  return
}

// -----

func.func @ep_placement_uncovered(%rows: tensor<?x8xf32>, %c: tensor<4xi64>) {
  // expected-error @below {{placement leaves expert 3 on no rank}}
  %local, %lc, %layout = dsv3.ep_dispatch %rows, %c ranks 2 placement [0, 1, 2, 0] : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<2xi64>, tensor<2x2xi64>)
  return
}

// -----

func.func @ep_placement_range(%rows: tensor<?x8xf32>, %c: tensor<4xi64>) {
  // expected-error @below {{placement names expert 7, outside [0, 4)}}
  %local, %lc, %layout = dsv3.ep_dispatch %rows, %c ranks 2 placement [0, 1, 2, 3, 7, 0] : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<3xi64>, tensor<2x3xi64>)
  return
}

// -----

func.func @fp8_weight_scales_shape(%q: tensor<40x48xf8E4M3FN>, %s: tensor<2x2xf32>) -> tensor<40x48xf32> {
  // expected-error @+1 {{block scales 'tensor<2x2xf32>' do not cover the FP8 weight 'tensor<40x48xf8E4M3FN>' in blocks of [16, 32]: dimension 0 must be 3}}
  %w = dsv3.fp8_weight %q, %s block [16, 32] : tensor<40x48xf8E4M3FN>, tensor<2x2xf32> -> tensor<40x48xf32>
  return %w : tensor<40x48xf32>
}

// -----

func.func @fp8_weight_block(%q: tensor<40x48xf8E4M3FN>, %s: tensor<3x2xf32>) -> tensor<40x48xf32> {
  // expected-error @+1 {{block must be two positive extents [rows, cols]}}
  %w = dsv3.fp8_weight %q, %s block [16, 0] : tensor<40x48xf8E4M3FN>, tensor<3x2xf32> -> tensor<40x48xf32>
  return %w : tensor<40x48xf32>
}

// -----

func.func @fp8_weight_result(%q: tensor<40x48xf8E4M3FN>, %s: tensor<3x2xf32>) -> tensor<48x40xf32> {
  // expected-error @+1 {{result 'tensor<48x40xf32>' must have the shape of the FP8 weight 'tensor<40x48xf8E4M3FN>'}}
  %w = dsv3.fp8_weight %q, %s block [16, 32] : tensor<40x48xf8E4M3FN>, tensor<3x2xf32> -> tensor<48x40xf32>
  return %w : tensor<48x40xf32>
}

// -----

dsv3.param @w attention : tensor<40x48xf32>
// expected-error @+1 {{scales @w, whose type 'tensor<40x48xf32>' is not f8E4M3FN}}
dsv3.param @w_scale_inv weight_scale scales @w : tensor<3x2xf32>

// -----

dsv3.param @w attention : tensor<40x48xf8E4M3FN>
// expected-error @+1 {{parameter @w_scale_inv has role weight_scale but no `scales @weight`}}
dsv3.param @w_scale_inv weight_scale : tensor<3x2xf32>

// -----

dsv3.param @w routed_experts stacked_from "e.{e}.w" : tensor<4x40x48xf8E4M3FN>
// expected-error @+1 {{block scales 'tensor<2x3x2xf32>' do not cover the FP8 weight 'tensor<4x40x48xf8E4M3FN>': dimension 0 must be 4}}
dsv3.param @w_scale_inv weight_scale stacked_from "e.{e}.w_scale_inv" scales @w : tensor<2x3x2xf32>

// -----

func.func @saved_without_flag(%x: tensor<2x8x64xf32>, %qb: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvan: tensor<32xf32>, %kvb: tensor<128x32xf32>, %o: tensor<64x64xf32>) {
  // expected-error @+1 {{returns 2 saved tensors; without save_for_backward none}}
  %y, %s, %l = dsv3.latent_attention %x q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) {kv_lora_rank = 32 : i64, num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, rope = #dsv3.rope<dim = 8, theta = 1.000000e+04>, softmax_scale = 0.2 : f64, v_head_dim = 16 : i64} : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<2x4x8xf32>)
  return
}

// -----

func.func @saved_lse_shape(%x: tensor<2x8x64xf32>, %qb: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvan: tensor<32xf32>, %kvb: tensor<128x32xf32>, %o: tensor<64x64xf32>) {
  // expected-error @+1 {{saved log-sum-exp must be [batch, num_heads, seq] = [2, 4, 8], got 'tensor<2x8x4xf32>'}}
  %y, %s, %l = dsv3.latent_attention %x q(%qb) kv_a(%kva, %kvan) kv_b(%kvb) o(%o) {kv_lora_rank = 32 : i64, num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, rope = #dsv3.rope<dim = 8, theta = 1.000000e+04>, save_for_backward, softmax_scale = 0.2 : f64, v_head_dim = 16 : i64} : (tensor<2x8x64xf32>, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<2x8x4xf32>)
  return
}
