// hook_probe (see hook_probe.h).
#include "torch/hook_probe.h"

#include <chrono>
#include <memory>
#include <optional>

#include <ATen/record_function.h>

namespace acb::torch_hook {

namespace {
Gate* g_probe_gate = nullptr;
std::optional<at::CallbackHandle> g_handle;
thread_local int t_probe_depth = 0;

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (t_probe_depth++ == 0) g_probe_gate->enter();
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* context) {
  if (--t_probe_depth == 0) g_probe_gate->exit();
}
}  // namespace

void set_record_function_hook(bool on, Gate& gate) {
  if (on && !g_handle) {
    g_probe_gate = &gate;
    g_handle = at::addGlobalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                         .needsInputs(true)
                                         .needsOutputs(true)
                                         .scopes({at::RecordScope::FUNCTION}));
  } else if (!on && g_handle) {
    at::removeCallback(*g_handle);
    g_handle.reset();
  }
}

double time_tiny_ops_ns(at::Tensor& tensor, std::int64_t iterations, TinyOp op) {
  const auto start = std::chrono::steady_clock::now();
  if (op == TinyOp::add_) {
    for (std::int64_t i = 0; i < iterations; ++i) tensor.add_(1);
  } else {
    for (std::int64_t i = 0; i < iterations; ++i) tensor.clamp_min_(0);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  return std::chrono::duration<double, std::nano>(elapsed).count() / static_cast<double>(iterations);
}

}  // namespace acb::torch_hook
