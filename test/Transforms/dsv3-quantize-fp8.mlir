// RUN: dsv3-opt %s -split-input-file -dsv3-quantize-fp8="block-rows=16 block-cols=32" -verify-diagnostics | FileCheck %s
// RUN: dsv3-opt %s -split-input-file -dsv3-quantize-fp8="block-rows=16 block-cols=32" -dsv3-lower-to-kernels -verify-diagnostics | FileCheck %s --check-prefix=KERNELS

// A dense projection, a stack of experts and the router: the projection
// and the experts become e4m3 with block scales (ceil(40 / 16) x
// ceil(48 / 32) = 3 x 2; per expert for the stack), read through
// dsv3.fp8_weight; the router and its bias stay as they were.
// CHECK-LABEL: module attributes {dsv3.checkpoint_fp8_block = array<i64: 16, 32>, dsv3.quantization = "fp8"}
// CHECK: dsv3.param @proj.weight attention : tensor<40x48xf8E4M3FN>
// CHECK-NEXT: dsv3.param @proj.weight_scale_inv weight_scale scales @proj.weight : tensor<3x2xf32>
// CHECK: dsv3.param @experts.weight routed_experts stacked_from "experts.{e}.weight" : tensor<4x40x48xf8E4M3FN>
// CHECK-NEXT: dsv3.param @experts.weight_scale_inv weight_scale stacked_from "experts.{e}.weight_scale_inv" scales @experts.weight : tensor<4x3x2xf32>
// CHECK: dsv3.param @gate.weight router : tensor<4x48xf32>
// CHECK-NOT: gate.weight_scale_inv
// CHECK-LABEL: func.func @forward
// CHECK: %[[Q:.+]] = dsv3.get_param @proj.weight : tensor<40x48xf8E4M3FN>
// CHECK-NEXT: %[[S:.+]] = dsv3.get_param @proj.weight_scale_inv : tensor<3x2xf32>
// CHECK-NEXT: %[[W:.+]] = dsv3.fp8_weight %[[Q]], %[[S]] block [16, 32] : tensor<40x48xf8E4M3FN>, tensor<3x2xf32> -> tensor<40x48xf32>
// CHECK-NEXT: dsv3.linear %arg0, %[[W]]
// CHECK: dsv3.fp8_weight {{.*}} -> tensor<4x40x48xf32>
// CHECK: dsv3.get_param @gate.weight : tensor<4x48xf32>

// The launches get the e4m3 buffers in the weights' places, the scales
// after the operands, and fp8_scales naming where each weight's are.
// KERNELS-LABEL: func.func @forward
// KERNELS: %[[Q:.+]] = dsv3k.param @proj.weight : memref<40x48xf8E4M3FN>
// KERNELS: %[[S:.+]] = dsv3k.param @proj.weight_scale_inv : memref<3x2xf32>
// KERNELS: dsv3k.launch "linear" ins(%arg0, %[[Q]], %[[S]] : memref<?x?x48xf32>, memref<40x48xf8E4M3FN>, memref<3x2xf32>) {{.*}} params {fp8_block = array<i64: 16, 32>, fp8_scales = array<i64: -1, 2>}
// KERNELS: dsv3k.launch "expert_grouped_matmul" ins({{.*}} : memref<?x48xf32>, memref<4x40x48xf8E4M3FN>, memref<4xi64>, memref<4x3x2xf32>) {{.*}} params {fp8_block = array<i64: 16, 32>, fp8_scales = array<i64: -1, 3, -1>}
// KERNELS: dsv3k.launch "linear" {{.*}} params {}
module {
  dsv3.param @proj.weight attention : tensor<40x48xf32>
  dsv3.param @experts.weight routed_experts stacked_from "experts.{e}.weight" : tensor<4x40x48xf32>
  dsv3.param @gate.weight router : tensor<4x48xf32>
  func.func @forward(%x: tensor<?x?x48xf32>, %rows: tensor<?x48xf32>, %counts: tensor<4xi64>) -> (tensor<?x?x40xf32>, tensor<?x40xf32>, tensor<?x?x4xf32>) attributes {dsv3.entry = "forward"} {
    %w = dsv3.get_param @proj.weight : tensor<40x48xf32>
    %y = dsv3.linear %x, %w : (tensor<?x?x48xf32>, tensor<40x48xf32>) -> tensor<?x?x40xf32>
    %e = dsv3.get_param @experts.weight : tensor<4x40x48xf32>
    %z = dsv3.expert_grouped_matmul %rows, %e, %counts : (tensor<?x48xf32>, tensor<4x40x48xf32>, tensor<4xi64>) -> tensor<?x40xf32>
    %g = dsv3.get_param @gate.weight : tensor<4x48xf32>
    %r = dsv3.linear %x, %g : (tensor<?x?x48xf32>, tensor<4x48xf32>) -> tensor<?x?x4xf32>
    return %y, %z, %r : tensor<?x?x40xf32>, tensor<?x40xf32>, tensor<?x?x4xf32>
  }
}

// -----

// A module that trains keeps its fp32 master weights: the GEMMs that
// multiply by the FP8 set (forward and their vjps) are marked
// `fp8_compute`; the router's GEMM (a router weight) and the MTP eh_proj are
// not.
// CHECK: module attributes {dsv3.quantization = "fp8"}
// CHECK-NEXT: dsv3.param @proj.weight attention : tensor<40x48xf32>
// CHECK-NEXT: dsv3.param @gate.weight router : tensor<4x48xf32>
// CHECK-LABEL: func.func @train_step
// CHECK: dsv3.linear %{{.+}}, %{{.+}} {fp8_compute = array<i64: 16, 32>}
// CHECK: dsv3.linear %{{.+}}, %{{.+}} :
// CHECK: dsv3.vjp "linear"({{.*}}) {{.*}} params {fp8_compute = array<i64: 16, 32>}
// CHECK: dsv3.vjp "linear"({{.*}}) {{.*}} params {} :
module {
  dsv3.param @proj.weight attention : tensor<40x48xf32>
  dsv3.param @gate.weight router : tensor<4x48xf32>
  func.func @train_step(%x: tensor<?x?x48xf32>, %dy: tensor<?x?x40xf32>, %dr: tensor<?x?x4xf32>) -> (tensor<?x?x40xf32>, tensor<?x?x4xf32>, tensor<40x48xf32>, tensor<4x48xf32>) attributes {dsv3.entry = "train_step"} {
    %w = dsv3.get_param @proj.weight : tensor<40x48xf32>
    %g = dsv3.get_param @gate.weight : tensor<4x48xf32>
    %y = dsv3.linear %x, %w : (tensor<?x?x48xf32>, tensor<40x48xf32>) -> tensor<?x?x40xf32>
    %r = dsv3.linear %x, %g : (tensor<?x?x48xf32>, tensor<4x48xf32>) -> tensor<?x?x4xf32>
    %dw = dsv3.vjp "linear"(%x, %w) cotangents(%dy) grads [1] params {} : (tensor<?x?x48xf32>, tensor<40x48xf32>, tensor<?x?x40xf32>) -> tensor<40x48xf32>
    %dg = dsv3.vjp "linear"(%x, %g) cotangents(%dr) grads [1] params {} : (tensor<?x?x48xf32>, tensor<4x48xf32>, tensor<?x?x4xf32>) -> tensor<4x48xf32>
    return %y, %r, %dw, %dg : tensor<?x?x40xf32>, tensor<?x?x4xf32>, tensor<40x48xf32>, tensor<4x48xf32>
  }
}
