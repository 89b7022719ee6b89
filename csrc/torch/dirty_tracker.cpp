// DirtyTracker: schema analysis and marking (see dirty_tracker.h).
#include "torch/dirty_tracker.h"

#include <atomic>
#include <optional>
#include <unordered_map>

namespace acb::torch_hook {

namespace {
OpWrites analyse(const c10::FunctionSchema& schema) {
  OpWrites writes;
  const auto& args = schema.arguments();
  // c10d's collectives and point-to-point ops (allreduce_, broadcast_,
  // recv_, _allgather_base_, reduce_scatter_ ...) write their tensors without
  // an (a!) annotation: every argument counts as written (those that hold no
  // tensor mark nothing).
  const bool collective = schema.name().rfind("c10d::", 0) == 0;
  writes.collective = collective;
  writes.functional_collective =
      schema.name().rfind("_c10d_functional::", 0) == 0 && schema.name() != "_c10d_functional::wait_tensor";
  for (std::size_t i = 0; i < args.size(); ++i) {
    const c10::AliasInfo* alias = args[i].alias_info();
    // batch_norm, native_batch_norm, instance_norm, the cudnn/miopen variants
    // and batch_norm_update_stats update their running statistics in place
    // without declaring it in the schema: treat those arguments as written
    // (in eval mode that costs one needless copy, never a lost update).
    const bool undeclared_write = args[i].name() == "running_mean" || args[i].name() == "running_var";
    if (collective || (alias != nullptr && alias->isWrite()) || undeclared_write) {
      writes.written_args.push_back(static_cast<int>(i));
    }
  }
  return writes;
}

void storages_of(const c10::IValue& value, WrittenStorages& out) {
  if (value.isTensor()) {
    out.add(value.toTensor());
  } else if (value.isTensorList()) {
    for (const at::Tensor& t : value.toTensorList()) out.add(t);
  } else if (value.isList()) {
    for (const c10::IValue& element : value.toListRef()) storages_of(element, out);
  }
}

std::atomic<SubclassFlattener> g_flattener{nullptr};
}  // namespace

const OpWrites& DirtyTracker::writes_of(const c10::OperatorHandle& op) {
  // Loops repeat the same op: a one-entry cache in front of the map. Map
  // nodes never move, so the pointer stays valid. The one-entry cache is
  // initial-exec TLS (plain pointers, no constructor): a %fs-relative load
  // instead of a __tls_get_addr call and an init guard on every op.
  __attribute__((tls_model("initial-exec"))) static thread_local const c10::FunctionSchema* last_schema = nullptr;
  __attribute__((tls_model("initial-exec"))) static thread_local const OpWrites* last_writes = nullptr;
  const c10::FunctionSchema* schema = &op.schema();
  if (schema == last_schema) [[likely]] return *last_writes;
  thread_local std::unordered_map<const c10::FunctionSchema*, OpWrites> cache;
  auto it = cache.find(schema);
  if (it == cache.end()) it = cache.emplace(schema, analyse(*schema)).first;
  last_schema = schema;
  last_writes = &it->second;
  return it->second;
}

void DirtyTracker::collect_written_args(const OpWrites& writes, const c10::OperatorHandle& op,
                                        const torch::jit::Stack& stack,
                                        WrittenStorages& out) const {
  const std::size_t nargs = op.schema().arguments().size();
  if (stack.size() < nargs) return;
  const std::size_t base = stack.size() - nargs;
  for (int index : writes.written_args) storages_of(stack[base + static_cast<std::size_t>(index)], out);
}

void DirtyTracker::mark_written_args(const WrittenStorages& written_args) const {
  for (const c10::StorageImpl* storage : written_args.storages) mark_storage(storage);
  for (const at::Tensor& subclass : written_args.subclasses) mark_subclass(subclass);
}

void DirtyTracker::set_subclass_flattener(SubclassFlattener flattener) { g_flattener.store(flattener); }

void DirtyTracker::mark_subclass(const at::Tensor& subclass) const {
  const SubclassFlattener flatten = g_flattener.load();
  std::vector<at::Tensor> inner;
  if (flatten == nullptr || !flatten(subclass, inner)) {
    if (alloc::Arena* arena = arena_.load(std::memory_order_acquire)) arena->mark_all_written();
    return;
  }
  // Already flattened recursively: a subclass left among them keeps its data
  // in its own storage (no __tensor_flatten__).
  for (const at::Tensor& t : inner) {
    if (t.defined() && t.has_storage()) mark_storage(t.storage().unsafeGetStorageImpl());
  }
}

std::uint64_t DirtyTracker::written_arg_mask(const char* name, const char* overload_name) {
  const std::optional<c10::OperatorHandle> op = c10::Dispatcher::singleton().findSchema({name, overload_name});
  if (!op) return ~std::uint64_t{0};
  std::uint64_t mask = 0;
  for (int index : analyse(op->schema()).written_args) {
    if (index >= 64) return ~std::uint64_t{0};  // unboxed kernels take at most 64 arguments
    mask |= std::uint64_t{1} << index;
  }
  return mask;
}

void DirtyTracker::mark_storage(const c10::StorageImpl* storage) const {
  // Data first: a storage without data (meta and fake tensors, which
  // torch.compile traces with) may have a symbolic size, and nbytes() throws
  // on those.
  alloc::Arena* arena = arena_.load(std::memory_order_acquire);
  if (arena == nullptr) return;  // before the first device operation: nothing of the arena exists
  const void* data = storage->data_ptr().get();
  if (data == nullptr) return;
  const std::size_t bytes = storage->nbytes();
  if (bytes == 0 || !arena->owns(data)) return;
  arena->mark_written(data, bytes);
}

}  // namespace acb::torch_hook
