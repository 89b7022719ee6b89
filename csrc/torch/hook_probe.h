// Measurement aids for the op-hook choice (benchmarks/torch): the
// alternative hook, a global RecordFunction callback that sees what the
// dispatcher hook sees (inputs and outputs, for dirty tracking) and gates the
// outermost op, and a C++ loop of tiny in-place ops timed without Python.
// Not used by acb.enable(); see docs/torch.md, "Op hook".
//
// Thread-safety: install/remove from one thread at a time.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "torch/gate.h"

namespace acb::torch_hook {

/// Installs (true) or removes (false) the RecordFunction alternative, gating on `gate`.
void set_record_function_hook(bool on, Gate& gate);

/// Which tiny in-place op time_tiny_ops_ns runs: add_ has an unboxed hook
/// kernel (unboxed_op_list.h), clamp_min_ goes through the boxed fallback.
enum class TinyOp { add_, clamp_min_ };

/// Runs `tensor.add_(1)` or `tensor.clamp_min_(0)` `iterations` times through
/// the dispatcher; returns ns per op.
double time_tiny_ops_ns(at::Tensor& tensor, std::int64_t iterations, TinyOp op);

}  // namespace acb::torch_hook
