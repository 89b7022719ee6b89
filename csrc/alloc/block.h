// A block: a contiguous, kMinBlockBytes-aligned piece of one segment, either
// allocated (in the pointer map) or free (in exactly one free pool, in a
// pending list waiting for stream events, or unlisted because its segment is
// offloaded). Blocks of a segment form an address-ordered doubly linked list
// that tiles the segment exactly.
//
// Not thread-safe: owned and mutated under the arena's mutex.
#pragma once

#include <cstddef>
#include <deque>
#include <vector>

#include "alloc/driver.h"

namespace acb::alloc {

struct Segment;
class BlockPool;

struct Block {
  DevicePtr address = 0;
  std::size_t bytes = 0;
  Segment* segment = nullptr;
  /// Address neighbours inside the segment (nullptr at the ends).
  Block* prev = nullptr;
  Block* next = nullptr;

  bool allocated = false;
  /// Set while the block waits in a pending list for stream events.
  bool pending = false;
  /// The free pool that lists this block (nullptr when allocated, pending or offloaded).
  BlockPool* pool = nullptr;
  /// Intrusive links of the size-class list (small blocks in a pool).
  Block* list_prev = nullptr;
  Block* list_next = nullptr;

  /// The stream the block was allocated on; its free pool is that stream's.
  StreamHandle stream = nullptr;
  /// Other streams that used the block (record_stream): their work must
  /// complete before the block is reused.
  std::vector<StreamHandle> extra_streams;
};

/// Recycles Block objects so that splitting and merging do not call new/delete
/// on the hot path. Blocks live as long as the store.
class BlockStore {
 public:
  Block* make() {
    if (free_.empty()) {
      storage_.emplace_back();
      return &storage_.back();
    }
    Block* block = free_.back();
    free_.pop_back();
    return block;
  }
  void recycle(Block* block) {
    block->extra_streams.clear();
    std::vector<StreamHandle> keep = std::move(block->extra_streams);
    *block = Block{};
    block->extra_streams = std::move(keep);
    free_.push_back(block);
  }

 private:
  std::deque<Block> storage_;  // stable addresses
  std::vector<Block*> free_;
};

}  // namespace acb::alloc
