// RUN: dsv3-opt %s -split-input-file -dsv3-autodiff -dsv3-optimizer='weight-decay=0.01 max-grad-norm=0.5 bias-update-rate=0.002' | FileCheck %s

// train_step: the backward pass of the loss, the global norm, one AdamW
// per trainable parameter (decay on matrices only, fp32 moments declared
// as optimizer_state parameters, stacked like theirs), the bias update of
// each routed layer from its expert counts, which are returned.
dsv3.param @"w" norm : tensor<8xf32>
dsv3.param @"gate" router : tensor<4x8xf32>
dsv3.param @"bias" router_bias : tensor<4xf32>
dsv3.param @"up" routed_experts stacked_from "up.{e}" : tensor<4x8x8xf32>
dsv3.param @"head" head : tensor<16x8xf32>
// CHECK: dsv3.param @optimizer.exp_avg.w optimizer_state : tensor<8xf32>
// CHECK: dsv3.param @optimizer.exp_avg_sq.w optimizer_state : tensor<8xf32>
// CHECK: dsv3.param @optimizer.exp_avg.up optimizer_state stacked_from "optimizer.exp_avg.up.{e}" : tensor<4x8x8xf32>
// CHECK-NOT: optimizer.exp_avg.bias
// CHECK-LABEL: func.func @train_step(%arg0: tensor<?x?xi64>, %arg1: tensor<?x?x8xf32>, %arg2: i64, %arg3: tensor<f32>) -> (tensor<f32>, tensor<f32>, tensor<4xi64>)
// CHECK-SAME: dsv3.entry = "train_step", dsv3.expert_count_params = [@bias]
// CHECK: %[[N:.+]] = dsv3.global_norm
// CHECK: dsv3.adamw @w, @optimizer.exp_avg.w, @optimizer.exp_avg_sq.w grad %{{.+}} step %arg2 lr %arg3 norm %[[N]] {beta1 = 9.000000e-01 : f64, beta2 = 0.94999999999999996 : f64, eps = 1.000000e-08 : f64, max_grad_norm = 5.000000e-01 : f64, weight_decay = 1.000000e-02 : f64} : tensor<8xf32>
// CHECK: dsv3.adamw @gate, {{.+}} {beta1 = {{.+}}, decay, {{.+}}} : tensor<4x8xf32>
// CHECK: dsv3.adamw @up, {{.+}} : tensor<4x8x8xf32>
// CHECK: dsv3.adamw @head,
// CHECK: dsv3.expert_bias_update @bias counts %[[C:.+]] rate 2.000000e-03 : tensor<4xi64>
// CHECK: return %{{.+}}, %[[N]], %[[C]]
func.func @loss(%ids: tensor<?x?xi64>, %x: tensor<?x?x8xf32>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %w0 = dsv3.get_param @"w" : tensor<8xf32>
  %xn = dsv3.rms_norm %x, %w0 eps 1.0e-6 : tensor<?x?x8xf32>, tensor<8xf32>
  %g = dsv3.get_param @"gate" : tensor<4x8xf32>
  %b = dsv3.get_param @"bias" : tensor<4xf32>
  %idx, %w = dsv3.moe_route sigmoid noaux_tc %xn, %g bias %b {num_experts_per_tok = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, norm_topk_prob, routed_scaling_factor = 2.5 : f64}
      : (tensor<?x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> (tensor<?x?x2xi64>, tensor<?x?x2xf32>)
  %rows, %counts, %slots = dsv3.moe_dispatch %xn, %idx experts 4 : (tensor<?x?x8xf32>, tensor<?x?x2xi64>) -> (tensor<?x8xf32>, tensor<4xi64>, tensor<?xi64>)
  %up = dsv3.get_param @"up" : tensor<4x8x8xf32>
  %y = dsv3.expert_grouped_matmul %rows, %up, %counts : (tensor<?x8xf32>, tensor<4x8x8xf32>, tensor<4xi64>) -> tensor<?x8xf32>
  %o = dsv3.moe_combine %y, %slots, %w : (tensor<?x8xf32>, tensor<?xi64>, tensor<?x?x2xf32>) -> tensor<?x?x8xf32>
  %h = dsv3.get_param @"head" : tensor<16x8xf32>
  %l = dsv3.lm_head %o, %h : (tensor<?x?x8xf32>, tensor<16x8xf32>) -> tensor<?x?x16xf32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<?x?x16xf32>, tensor<?x?xi64>) -> tensor<f32>
  return %c : tensor<f32>
}

// -----

// With a train_loss entry (the balance terms), train_step differentiates it.
dsv3.param @"head" head : tensor<16x8xf32>
// CHECK-LABEL: func.func @train_gradients
// CHECK-LABEL: func.func @train_step
// CHECK: dsv3.vjp "moe_balance_loss"
func.func @loss(%ids: tensor<1x4xi64>, %x: tensor<1x4x8xf32>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %h = dsv3.get_param @"head" : tensor<16x8xf32>
  %l = dsv3.lm_head %x, %h : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x4x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return %c : tensor<f32>
}
func.func @train_loss(%ids: tensor<1x4xi64>, %x: tensor<1x4x8xf32>, %ids2: tensor<1x4x2xi64>) -> tensor<f32> attributes {dsv3.entry = "train_loss"} {
  %h = dsv3.get_param @"head" : tensor<16x8xf32>
  %l = dsv3.lm_head %x, %h : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x4x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  %bl = dsv3.moe_balance_loss sigmoid %x, %h, %ids2 {alpha = 1.0e-4 : f64, sequence_wise} : (tensor<1x4x8xf32>, tensor<16x8xf32>, tensor<1x4x2xi64>) -> tensor<f32>
  %t = dsv3.add %c, %bl : tensor<f32>
  return %t : tensor<f32>
}

// -----

// state-type=bf16 (DeepSeek-V3 3.3.3): the moments are bf16 parameters;
// the master weight and its gradient stay fp32.
// RUN: dsv3-opt %s -split-input-file -dsv3-autodiff -dsv3-optimizer='state-type=bf16' | FileCheck %s --check-prefix=BF16
dsv3.param @"head" head : tensor<16x8xf32>
// BF16: dsv3.param @head head : tensor<16x8xf32>
// BF16-NEXT: dsv3.param @optimizer.exp_avg.head optimizer_state : tensor<16x8xbf16>
// BF16-NEXT: dsv3.param @optimizer.exp_avg_sq.head optimizer_state : tensor<16x8xbf16>
// BF16-LABEL: func.func @train_step
// BF16: dsv3.adamw @head, @optimizer.exp_avg.head, @optimizer.exp_avg_sq.head grad %{{.+}} : tensor<16x8xf32>
func.func @loss(%ids: tensor<1x4xi64>, %x: tensor<1x4x8xf32>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %h = dsv3.get_param @"head" : tensor<16x8xf32>
  %l = dsv3.lm_head %x, %h : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x4x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return %c : tensor<f32>
}

// -----

// Another state type is refused.
// RUN: not dsv3-opt %s -split-input-file -dsv3-autodiff -dsv3-optimizer='state-type=f16' 2>&1 | FileCheck %s --check-prefix=BADTYPE
// BADTYPE: error: dsv3-optimizer: state-type must be f32 or bf16, not 'f16'
dsv3.param @"head" head : tensor<16x8xf32>
func.func @loss(%ids: tensor<1x4xi64>, %x: tensor<1x4x8xf32>) -> tensor<f32> attributes {dsv3.entry = "loss"} {
  %h = dsv3.get_param @"head" : tensor<16x8xf32>
  %l = dsv3.lm_head %x, %h : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %c = dsv3.cross_entropy %l, %ids shift 1 scale 1.0 : (tensor<1x4x16xf32>, tensor<1x4xi64>) -> tensor<f32>
  return %c : tensor<f32>
}
