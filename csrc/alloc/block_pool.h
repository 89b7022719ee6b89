// BlockPool: the free blocks that one stream may reuse immediately (or, for
// the arena's "ready" pool, that any stream may reuse).
//
// Small blocks (from small segments) sit in exact-size class lists, one per
// multiple of kMinBlockBytes, with a two-level bitmap of non-empty classes so
// that "smallest free block >= n" is a couple of word scans: O(1) in practice.
// Large blocks sit in a set ordered by (size, address): best fit is a
// lower_bound.
//
// Not thread-safe: used under the arena's mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <utility>
#include <vector>

#include "alloc/block.h"

namespace acb::alloc {

class BlockPool {
 public:
  /// `stream` keys the pool (unused for the ready pool); small free blocks
  /// are at most `small_segment_bytes`.
  BlockPool(StreamHandle stream, std::size_t small_segment_bytes);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  StreamHandle stream() const { return stream_; }

  /// Lists a free block (sets block->pool).
  void insert(Block* block);
  /// Unlists a block that this pool holds.
  void erase(Block* block);
  /// Removes and returns the smallest block of at least `bytes` of the given
  /// kind (small or large segments), or nullptr.
  Block* take_best_fit(std::size_t bytes, bool small);
  /// True when take_best_fit would succeed.
  bool has_fit(std::size_t bytes, bool small) const;

  bool empty() const { return count_ == 0; }
  std::size_t count() const { return count_; }
  std::size_t free_bytes() const { return bytes_; }

  /// Calls `fn` on every listed block (must not modify the pool).
  void for_each(const std::function<void(Block*)>& fn) const;
  /// Checks the pool's own structure (class lists, bitmap, set order); throws
  /// std::logic_error naming what is broken.
  void validate() const;

 private:
  struct LargeOrder {
    using is_transparent = void;
    bool operator()(const Block* a, const Block* b) const {
      return a->bytes != b->bytes ? a->bytes < b->bytes : a->address < b->address;
    }
    bool operator()(const Block* a, std::size_t bytes) const { return a->bytes < bytes; }
    bool operator()(std::size_t bytes, const Block* b) const { return bytes < b->bytes; }
  };

  std::size_t first_class_at_least(std::size_t cls) const;  // SIZE_MAX when none
  void set_bit(std::size_t cls);
  void clear_bit(std::size_t cls);

  StreamHandle stream_;
  std::size_t class_count_;
  std::vector<Block*> heads_;           // per size class, LIFO
  std::vector<std::uint64_t> words_;    // bit per non-empty class
  std::vector<std::uint64_t> summary_;  // bit per non-zero word
  std::set<Block*, LargeOrder> large_;
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace acb::alloc
