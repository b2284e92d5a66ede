// RUN: dsv3-opt %s -split-input-file -verify-diagnostics

func.func @max_shape_rank() {
  // expected-error @+1 {{max_shape has 2 extents but the buffer has rank 3}}
  %0 = dsv3k.alloc max_shape [4, 64] : memref<?x?x64xf32>
  return
}

// -----

func.func @max_shape_negative() {
  // expected-error @+1 {{max_shape extent 0 (-1) must be >= 0}}
  %0 = dsv3k.alloc max_shape [-1, 64] : memref<?x64xf32>
  return
}

// -----

func.func @max_shape_static() {
  // expected-error @+1 {{max_shape extent 1 (32) must equal the static extent 64}}
  %0 = dsv3k.alloc max_shape [4, 32] : memref<?x64xf32>
  return
}

// -----

func.func @offset_alignment() {
  // expected-error @+1 {{offset (100) must be a non-negative multiple of 256}}
  %0 = dsv3k.alloc max_shape [4, 64] {offset = 100 : i64, bytes = 1024 : i64} : memref<?x64xf32>
  return
}

// -----

func.func @bytes_too_small() {
  // expected-error @+1 {{bytes (512) is smaller than the buffer at max_shape (1024)}}
  %0 = dsv3k.alloc max_shape [4, 64] {offset = 0 : i64, bytes = 512 : i64} : memref<?x64xf32>
  return
}

// -----

func.func @param_missing() {
  // expected-error @+1 {{@nothing does not reference a dsv3.param}}
  %0 = dsv3k.param @nothing : memref<64xf32>
  return
}

// -----

dsv3.param @"model.norm.weight" norm : tensor<64xf32>
func.func @param_type() {
  // expected-error @+1 {{buffer type 'memref<32xf32>' does not match parameter @model.norm.weight of type 'tensor<64xf32>'}}
  %0 = dsv3k.param @"model.norm.weight" : memref<32xf32>
  return
}

// -----

func.func @kernel_name(%x: memref<4xf32>) {
  // expected-error @+1 {{needs a kernel name}}
  dsv3k.launch "" ins(%x : memref<4xf32>) outs(%x : memref<4xf32>) params {}
  return
}

// -----

func.func @no_output(%x: memref<4xf32>) {
  // expected-error @+1 {{kernel 'add' writes no output buffer}}
  "dsv3k.launch"(%x) <{kernel = "add", params = {}, operandSegmentSizes = array<i32: 1, 0>}> : (memref<4xf32>) -> ()
  return
}

// -----

func.func @scalar_type(%x: memref<4xf32>, %f: f32) {
  // expected-error @+1 {{input of type 'f32' must be a buffer (memref) or an i64 scalar}}
  dsv3k.launch "add" ins(%x, %f : memref<4xf32>, f32) outs(%x : memref<4xf32>) params {}
  return
}
