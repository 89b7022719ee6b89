// Export pins: storages handed to code outside torch's dispatcher (numpy
// arrays, DLPack consumers) stay resident, and count as written, for as long
// as the exporting object lives (session.h, pin_exported).
//
// A numpy array is released from Python (weakref.finalize in acb/_exports.py);
// a DLPack capsule from C: pin_dlpack_capsule wraps the capsule's deleter, so
// the pin ends when the consumer (or the unconsumed capsule's destructor)
// deletes the managed tensor, on whatever thread that happens.
//
// Thread-safety: thread-safe (the arena locks); needs the GIL only for the
// capsule lookup.
#pragma once

#include <cstddef>

#include <ATen/core/Tensor.h>
#include <Python.h>

namespace acb::torch_hook {

/// The storage range of `tensor` (its data pointer and byte size), or
/// {nullptr, 0} for a tensor without storage data.
struct StorageRange {
  const void* data = nullptr;
  std::size_t bytes = 0;
};
StorageRange storage_range(const at::Tensor& tensor);

/// Pins the storage of `tensor` while the DLPack capsule `capsule` (a
/// "dltensor" or "dltensor_versioned" capsule exporting it) is not deleted.
/// Returns false, pinning nothing, when the storage lies outside the arena.
/// Throws std::invalid_argument for another kind of capsule.
bool pin_dlpack_capsule(PyObject* capsule, const at::Tensor& tensor);

}  // namespace acb::torch_hook
