// RUN: dsv3-opt %s -split-input-file -dsv3k-plan-memory | FileCheck %s

// A chain a -> b -> c -> d: a is dead once b is written, so c reuses a's
// space; d is returned and lives to the end. 1000 floats = 4000 bytes,
// aligned to 4096.
// CHECK-LABEL: func.func @chain
// CHECK-SAME: dsv3k.arena_bytes = 8192 : i64, dsv3k.unplanned_bytes = 16384 : i64
// CHECK: %[[A:.+]] = dsv3k.alloc max_shape [1000] {bytes = 4096 : i64, offset = 0 : i64}
// CHECK: %[[B:.+]] = dsv3k.alloc max_shape [1000] {bytes = 4096 : i64, offset = 4096 : i64}
// CHECK: %[[C:.+]] = dsv3k.alloc max_shape [1000] {bytes = 4096 : i64, offset = 0 : i64}
// CHECK: %[[D:.+]] = dsv3k.alloc max_shape [1000] {bytes = 4096 : i64, offset = 4096 : i64}
func.func @chain(%x: memref<?xf32>) -> memref<?xf32> attributes {dsv3.entry = "forward"} {
  %a = dsv3k.alloc max_shape [1000] : memref<?xf32>
  dsv3k.launch "k" ins(%x : memref<?xf32>) outs(%a : memref<?xf32>) params {}
  %b = dsv3k.alloc max_shape [1000] : memref<?xf32>
  dsv3k.launch "k" ins(%a : memref<?xf32>) outs(%b : memref<?xf32>) params {}
  %c = dsv3k.alloc max_shape [1000] : memref<?xf32>
  dsv3k.launch "k" ins(%b : memref<?xf32>) outs(%c : memref<?xf32>) params {}
  %d = dsv3k.alloc max_shape [1000] : memref<?xf32>
  dsv3k.launch "k" ins(%c : memref<?xf32>) outs(%d : memref<?xf32>) params {}
  return %d : memref<?xf32>
}

// -----

// A residual stream: h stays live across the block, so the block's
// temporaries never take its place; the small buffer fits in a gap.
// CHECK-LABEL: func.func @residual
// CHECK-SAME: dsv3k.arena_bytes = 8448 : i64
// CHECK: dsv3k.alloc max_shape [1000] {bytes = 4096 : i64, offset = 0 : i64}
// CHECK: dsv3k.alloc max_shape [1000] {bytes = 4096 : i64, offset = 4096 : i64}
// CHECK: dsv3k.alloc max_shape [10] {bytes = 256 : i64, offset = 8192 : i64}
// CHECK: dsv3k.alloc max_shape [1000] {bytes = 4096 : i64, offset = 4096 : i64}
func.func @residual(%x: memref<?xf32>) -> memref<?xf32> attributes {dsv3.entry = "forward"} {
  %h = dsv3k.alloc max_shape [1000] : memref<?xf32>
  dsv3k.launch "k" ins(%x : memref<?xf32>) outs(%h : memref<?xf32>) params {}
  %t = dsv3k.alloc max_shape [1000] : memref<?xf32>
  dsv3k.launch "k" ins(%h : memref<?xf32>) outs(%t : memref<?xf32>) params {}
  %s = dsv3k.alloc max_shape [10] : memref<?xf32>
  dsv3k.launch "k" ins(%t : memref<?xf32>) outs(%s : memref<?xf32>) params {}
  %out = dsv3k.alloc max_shape [1000] : memref<?xf32>
  dsv3k.launch "add" ins(%h, %s : memref<?xf32>, memref<?xf32>) outs(%out : memref<?xf32>) params {}
  return %out : memref<?xf32>
}
