// The C ABI (pluggable_allocator.h): thin, never-throwing wrappers over the
// process registry's arenas.
#include "alloc/pluggable_allocator.h"

#include <cstdio>
#include <exception>

#include "alloc/process_arenas.h"

namespace {

void report(const char* call, const std::exception& error) {
  std::fprintf(stderr, "%s: %s\n", call, error.what());
}

}  // namespace

extern "C" {

void* acb_alloc_malloc(ssize_t size, int device, void* stream) {
  if (size <= 0) {
    if (size < 0)
      std::fprintf(stderr, "acb_alloc_malloc: negative size %zd on device %d\n", size, device);
    return nullptr;
  }
  try {
    return acb::alloc::process_arena(device).malloc(static_cast<std::size_t>(size), stream);
  } catch (const std::exception& error) {
    report("acb_alloc_malloc", error);
  } catch (...) {
    std::fprintf(stderr, "acb_alloc_malloc: unknown error (size=%zd, device=%d)\n", size, device);
  }
  return nullptr;
}

void acb_alloc_free(void* ptr, ssize_t size, int device, void* stream) {
  if (ptr == nullptr) return;
  try {
    acb::alloc::Arena* arena = acb::alloc::detail::existing_process_arena(device);
    if (arena == nullptr || !arena->owns(ptr)) arena = acb::alloc::process_arena_owning(ptr);
    if (arena == nullptr) {
      std::fprintf(stderr,
                   "acb_alloc_free: %p (size=%zd, device=%d) is not memory of any acb arena\n", ptr,
                   size, device);
      return;
    }
    arena->free(ptr, stream);
  } catch (const std::exception& error) {
    report("acb_alloc_free", error);
  } catch (...) {
    std::fprintf(stderr, "acb_alloc_free: unknown error (ptr=%p, device=%d)\n", ptr, device);
  }
}

void acb_alloc_empty_cache(void) {
  try {
    acb::alloc::for_each_process_arena([](acb::alloc::Arena& arena) { arena.empty_cache(); });
  } catch (const std::exception& error) {
    report("acb_alloc_empty_cache", error);
  } catch (...) {
    std::fprintf(stderr, "acb_alloc_empty_cache: unknown error\n");
  }
}

void acb_alloc_record_stream(void* ptr, void* stream) {
  if (ptr == nullptr) return;
  try {
    acb::alloc::Arena* arena = acb::alloc::process_arena_owning(ptr);
    if (arena == nullptr) {
      std::fprintf(stderr, "acb_alloc_record_stream: %p is not memory of any acb arena\n", ptr);
      return;
    }
    arena->record_stream(ptr, stream);
  } catch (const std::exception& error) {
    report("acb_alloc_record_stream", error);
  } catch (...) {
    std::fprintf(stderr, "acb_alloc_record_stream: unknown error (ptr=%p)\n", ptr);
  }
}

}  // extern "C"
