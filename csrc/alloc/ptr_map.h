// PtrMap: allocated address -> Block, the lookup on every free.
//
// Open addressing with linear probing and backward-shift deletion (no
// tombstones), so insert/find/erase touch one or two cache lines and never
// allocate except when the table doubles. Keys are block addresses (never 0,
// multiples of kMinBlockBytes).
//
// Not thread-safe: used under the arena's mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "alloc/block.h"

namespace acb::alloc {

class PtrMap {
 public:
  PtrMap() : slots_(1024) {}

  void insert(DevicePtr key, Block* block) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    place(key, block);
    ++size_;
  }

  Block* find(DevicePtr key) const {
    std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash(key) & mask;; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (slot.key == key) return slot.block;
      if (slot.key == 0) return nullptr;
    }
  }

  /// Removes `key`; returns false when it is absent.
  bool erase(DevicePtr key) {
    std::size_t mask = slots_.size() - 1;
    std::size_t i = hash(key) & mask;
    while (slots_[i].key != key) {
      if (slots_[i].key == 0) return false;
      i = (i + 1) & mask;
    }
    // Backward shift: pull later entries of the probe run into the hole.
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask; slots_[j].key != 0; j = (j + 1) & mask) {
      std::size_t home = hash(slots_[j].key) & mask;
      // Movable when its home is not inside the cyclic range (hole, j].
      bool movable = ((j - home) & mask) >= ((j - hole) & mask);
      if (movable) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
    --size_;
    return true;
  }

  std::size_t size() const { return size_; }

  template <class Fn>
  void for_each(Fn&& fn) const {
    for (const Slot& slot : slots_)
      if (slot.key != 0) fn(slot.key, slot.block);
  }

 private:
  struct Slot {
    DevicePtr key = 0;
    Block* block = nullptr;
  };

  static std::size_t hash(DevicePtr key) {
    // Fibonacci hashing of the block index: spreads 512-byte strides.
    return static_cast<std::size_t>(((key >> 9) * 0x9E3779B97F4A7C15ULL) >> 20);
  }

  void place(DevicePtr key, Block* block) {
    std::size_t mask = slots_.size() - 1;
    std::size_t i = hash(key) & mask;
    while (slots_[i].key != 0) i = (i + 1) & mask;
    slots_[i] = Slot{key, block};
  }

  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& slot : old)
      if (slot.key != 0) place(slot.key, slot.block);
  }

  std::vector<Slot> slots_;  // size is a power of two
  std::size_t size_ = 0;
};

}  // namespace acb::alloc
