//===- VjpOperands.h - the operands of a vjp launch ---------------*- C++ -*-===//
//
// Shared by the host and CUDA backends: a "<op>_vjp" kernel's inputs are
// the op's `num_primals` primals followed by the cotangents of its float
// results; its outputs are the gradients of the operands listed in
// `grad_operands`. Checked against the launch, naming the kernel (an edited
// manifest must not index out of bounds).
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_VJPOPERANDS_H
#define DSV3_RUNTIME_VJPOPERANDS_H

#include "runtime/Error.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace dsv3rt {

template <typename Tensor> struct VjpOperands {
  std::vector<Tensor *> primals, cts;
  std::vector<Tensor *> grads; // by operand; nullptr when not asked for

  VjpOperands(const std::string &k, const nlohmann::json &p,
              const std::vector<Tensor *> &in, const std::vector<Tensor *> &out) {
    if (!p.contains("num_primals") || !p.contains("grad_operands"))
      fail("kernel {}: no num_primals / grad_operands parameters", k);
    size_t np = p.at("num_primals").get<size_t>();
    if (np > in.size())
      fail("kernel {}: {} primals but {} inputs", k, np, in.size());
    primals.assign(in.begin(), in.begin() + np);
    cts.assign(in.begin() + np, in.end());
    grads.assign(np, nullptr);
    const nlohmann::json &go = p.at("grad_operands");
    if (go.size() != out.size())
      fail("kernel {}: {} gradients listed but {} outputs", k, go.size(), out.size());
    for (size_t i = 0; i < go.size(); ++i) {
      size_t idx = go[i].get<size_t>();
      if (idx >= np)
        fail("kernel {}: gradient of operand {} of {}", k, idx, np);
      grads[idx] = out[i];
    }
  }
};

} // namespace dsv3rt

#endif // DSV3_RUNTIME_VJPOPERANDS_H
