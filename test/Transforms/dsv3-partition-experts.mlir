// RUN: dsv3-opt %s -split-input-file -verify-diagnostics -dsv3-partition-experts="ep=2 dp=2" | FileCheck %s

// An MoE layer over 2 expert-parallel ranks: the stacked expert weights
// become one rank's half (sharded_over 2), and the expert GEMMs sit between
// the two all-to-all-v exchanges.
// CHECK: module attributes {dsv3.data_parallel = 2 : i64, dsv3.expert_parallel = 2 : i64}
// CHECK: dsv3.param @w_gate routed_experts stacked_from "experts.{e}.gate" sharded_over 2 : tensor<2x16x8xf32>
// CHECK: dsv3.param @w_down routed_experts stacked_from "experts.{e}.down" sharded_over 2 : tensor<2x8x16xf32>
// CHECK: dsv3.param @w_shared shared_experts : tensor<16x8xf32>
// CHECK-LABEL: func.func @forward
// CHECK: %[[ROWS:.+]], %[[COUNTS:.+]], %[[SLOTS:.+]] = dsv3.moe_dispatch
// CHECK-NEXT: %[[LOCAL:.+]], %[[LCOUNTS:.+]], %[[LAYOUT:.+]] = dsv3.ep_dispatch %[[ROWS]], %[[COUNTS]] ranks 2 : (tensor<?x8xf32>, tensor<4xi64>) -> (tensor<?x8xf32>, tensor<2xi64>, tensor<2x2xi64>)
// CHECK: %[[WG:.+]] = dsv3.get_param @w_gate : tensor<2x16x8xf32>
// CHECK: %[[A:.+]] = dsv3.expert_gated_matmul %[[LOCAL]], %[[WG]], %{{.+}}, %[[LCOUNTS]]
// CHECK: %[[Y:.+]] = dsv3.expert_grouped_matmul %[[A]], %{{.+}}, %[[LCOUNTS]]
// CHECK-NEXT: %[[BACK:.+]] = dsv3.ep_combine %[[Y]], %[[LAYOUT]], %[[COUNTS]] ranks 2
// CHECK-NEXT: dsv3.moe_combine %[[BACK]], %[[SLOTS]]
module {
  dsv3.param @w_gate routed_experts stacked_from "experts.{e}.gate" : tensor<4x16x8xf32>
  dsv3.param @w_up routed_experts stacked_from "experts.{e}.up" : tensor<4x16x8xf32>
  dsv3.param @w_down routed_experts stacked_from "experts.{e}.down" : tensor<4x8x16xf32>
  dsv3.param @w_shared shared_experts : tensor<16x8xf32>
  func.func @forward(%h: tensor<?x?x8xf32>, %idx: tensor<?x?x2xi64>, %wts: tensor<?x?x2xf32>) -> tensor<?x?x8xf32> {
    %rows, %counts, %slots = dsv3.moe_dispatch %h, %idx experts 4 : (tensor<?x?x8xf32>, tensor<?x?x2xi64>) -> (tensor<?x8xf32>, tensor<4xi64>, tensor<?xi64>)
    %wg = dsv3.get_param @w_gate : tensor<4x16x8xf32>
    %wu = dsv3.get_param @w_up : tensor<4x16x8xf32>
    %a = dsv3.expert_gated_matmul %rows, %wg, %wu, %counts : (tensor<?x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4xi64>) -> tensor<?x16xf32>
    %wd = dsv3.get_param @w_down : tensor<4x8x16xf32>
    %y = dsv3.expert_grouped_matmul %a, %wd, %counts : (tensor<?x16xf32>, tensor<4x8x16xf32>, tensor<4xi64>) -> tensor<?x8xf32>
    %out = dsv3.moe_combine %y, %slots, %wts : (tensor<?x8xf32>, tensor<?xi64>, tensor<?x?x2xf32>) -> tensor<?x?x8xf32>
    return %out : tensor<?x?x8xf32>
  }
}

// -----

// The experts must split evenly over the ranks.
module {
  // expected-error @below {{cannot split the 3 experts of @w over 2 expert-parallel ranks}}
  dsv3.param @w routed_experts stacked_from "experts.{e}.w" : tensor<3x16x8xf32>
}

// -----

// Dispatched rows read by anything but the expert GEMMs have no
// expert-parallel form.
module {
  dsv3.param @w routed_experts stacked_from "experts.{e}.w" : tensor<4x8x8xf32>
  func.func @forward(%h: tensor<?x?x8xf32>, %idx: tensor<?x?x2xi64>) -> tensor<?x8xf32> {
    %rows, %counts, %slots = dsv3.moe_dispatch %h, %idx experts 4 : (tensor<?x?x8xf32>, tensor<?x?x2xi64>) -> (tensor<?x8xf32>, tensor<4xi64>, tensor<?xi64>)
    // expected-error @below {{the dispatched rows feed 'dsv3.swiglu', which has no expert-parallel form}}
    %s = dsv3.swiglu %rows, %rows : tensor<?x8xf32>
    return %s : tensor<?x8xf32>
  }
}
