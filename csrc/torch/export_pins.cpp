// Export pins (see export_pins.h).
#include "torch/export_pins.h"

#include <ATen/dlpack.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "torch/session.h"

namespace acb::torch_hook {

namespace {

// What the wrapped deleter needs: the producer's own deleter and context,
// put back before it runs, and the pinned range.
template <class Managed>
struct PinnedExport {
  void (*deleter)(Managed*) = nullptr;
  void* manager_ctx = nullptr;
  StorageRange range;
};

template <class Managed>
void unpin_then_delete(Managed* managed) {
  auto* pinned = static_cast<PinnedExport<Managed>*>(managed->manager_ctx);
  managed->manager_ctx = pinned->manager_ctx;
  managed->deleter = pinned->deleter;
  const StorageRange range = pinned->range;
  delete pinned;
  // The consumer is done with the memory: it may be offloaded again, and
  // whatever the consumer wrote is copied at the next offload.
  try {
    unpin_exported(range.data, range.bytes);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acb: ending the pin of a DLPack export failed: %s\n", e.what());
  }
  if (managed->deleter != nullptr) managed->deleter(managed);
}

template <class Managed>
bool wrap(Managed* managed, StorageRange range) {
  // A copy (copy=True, another device) shares nothing with the storage.
  const auto* data = static_cast<const char*>(managed->dl_tensor.data) + managed->dl_tensor.byte_offset;
  const auto* begin = static_cast<const char*>(range.data);
  if (data < begin || data >= begin + range.bytes) return false;
  if (pin_exported(range.data, range.bytes) == 0) return false;
  auto* pinned = new PinnedExport<Managed>{managed->deleter, managed->manager_ctx, range};
  managed->manager_ctx = pinned;
  managed->deleter = &unpin_then_delete<Managed>;
  return true;
}

}  // namespace

StorageRange storage_range(const at::Tensor& tensor) {
  if (!tensor.defined() || !tensor.has_storage()) return {};
  const c10::StorageImpl* storage = tensor.storage().unsafeGetStorageImpl();
  const void* data = storage->data_ptr().get();
  if (data == nullptr || storage->nbytes() == 0) return {};
  return {data, storage->nbytes()};
}

bool pin_dlpack_capsule(PyObject* capsule, const at::Tensor& tensor) {
  const StorageRange range = storage_range(tensor);
  if (range.data == nullptr) return false;
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    return wrap(managed, range);
  }
  if (PyCapsule_IsValid(capsule, "dltensor_versioned")) {
    auto* managed =
        static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(capsule, "dltensor_versioned"));
    return wrap(managed, range);
  }
  throw std::invalid_argument(
      "acb: expected an unconsumed DLPack capsule ('dltensor' or 'dltensor_versioned')");
}

}  // namespace acb::torch_hook
