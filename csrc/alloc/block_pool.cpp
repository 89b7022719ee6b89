#include "alloc/block_pool.h"

#include <bit>
#include <stdexcept>
#include <string>

#include "alloc/segment.h"
#include "alloc/size_classes.h"

namespace acb::alloc {

BlockPool::BlockPool(StreamHandle stream, std::size_t small_segment_bytes)
    : stream_(stream),
      class_count_(small_segment_bytes / kMinBlockBytes),
      heads_(class_count_, nullptr),
      words_((class_count_ + 63) / 64, 0),
      summary_((words_.size() + 63) / 64, 0) {}

void BlockPool::set_bit(std::size_t cls) {
  std::size_t word = cls / 64;
  words_[word] |= std::uint64_t{1} << (cls % 64);
  summary_[word / 64] |= std::uint64_t{1} << (word % 64);
}

void BlockPool::clear_bit(std::size_t cls) {
  std::size_t word = cls / 64;
  words_[word] &= ~(std::uint64_t{1} << (cls % 64));
  if (words_[word] == 0) summary_[word / 64] &= ~(std::uint64_t{1} << (word % 64));
}

std::size_t BlockPool::first_class_at_least(std::size_t cls) const {
  if (cls >= class_count_) return SIZE_MAX;
  std::size_t word = cls / 64;
  std::uint64_t bits = words_[word] & (~std::uint64_t{0} << (cls % 64));
  if (bits != 0) return word * 64 + static_cast<std::size_t>(std::countr_zero(bits));
  // Find the next non-empty word through the summary.
  std::size_t w = word + 1;
  while (w < words_.size()) {
    std::size_t s = w / 64;
    std::uint64_t sbits = summary_[s] & (~std::uint64_t{0} << (w % 64));
    if (sbits != 0) {
      std::size_t found = s * 64 + static_cast<std::size_t>(std::countr_zero(sbits));
      return found * 64 + static_cast<std::size_t>(std::countr_zero(words_[found]));
    }
    w = (s + 1) * 64;
  }
  return SIZE_MAX;
}

void BlockPool::insert(Block* block) {
  block->pool = this;
  ++count_;
  bytes_ += block->bytes;
  if (block->segment->small) {
    std::size_t cls = size_class(block->bytes);
    block->list_prev = nullptr;
    block->list_next = heads_[cls];
    if (heads_[cls] != nullptr) heads_[cls]->list_prev = block;
    heads_[cls] = block;
    set_bit(cls);
  } else {
    large_.insert(block);
  }
}

void BlockPool::erase(Block* block) {
  --count_;
  bytes_ -= block->bytes;
  if (block->segment->small) {
    std::size_t cls = size_class(block->bytes);
    if (block->list_prev != nullptr) {
      block->list_prev->list_next = block->list_next;
    } else {
      heads_[cls] = block->list_next;
      if (heads_[cls] == nullptr) clear_bit(cls);
    }
    if (block->list_next != nullptr) block->list_next->list_prev = block->list_prev;
    block->list_prev = block->list_next = nullptr;
  } else {
    large_.erase(block);
  }
  block->pool = nullptr;
}

Block* BlockPool::take_best_fit(std::size_t bytes, bool small) {
  Block* block = nullptr;
  if (small) {
    std::size_t cls = first_class_at_least(size_class(bytes));
    if (cls == SIZE_MAX) return nullptr;
    block = heads_[cls];
  } else {
    auto it = large_.lower_bound(bytes);
    if (it == large_.end()) return nullptr;
    block = *it;
  }
  erase(block);
  return block;
}

bool BlockPool::has_fit(std::size_t bytes, bool small) const {
  if (small) return first_class_at_least(size_class(bytes)) != SIZE_MAX;
  return large_.lower_bound(bytes) != large_.end();
}

void BlockPool::for_each(const std::function<void(Block*)>& fn) const {
  for (Block* head : heads_)
    for (Block* b = head; b != nullptr; b = b->list_next) fn(b);
  for (Block* b : large_) fn(b);
}

void BlockPool::validate() const {
  auto fail = [](const std::string& what) {
    throw std::logic_error("Arena::validate: free pool: " + what);
  };
  std::size_t count = 0;
  std::size_t bytes = 0;
  for (std::size_t cls = 0; cls < class_count_; ++cls) {
    bool bit = (words_[cls / 64] >> (cls % 64)) & 1U;
    if (bit != (heads_[cls] != nullptr))
      fail("bitmap bit of class " + std::to_string(cls) + " disagrees with its list");
    const Block* prev = nullptr;
    for (const Block* b = heads_[cls]; b != nullptr; b = b->list_next) {
      if (b->list_prev != prev) fail("broken back link in class " + std::to_string(cls));
      if (!b->segment->small || size_class(b->bytes) != cls)
        fail("block of " + std::to_string(b->bytes) + " bytes listed in size class " +
             std::to_string(cls));
      ++count;
      bytes += b->bytes;
      prev = b;
    }
  }
  for (std::size_t w = 0; w < words_.size(); ++w) {
    bool bit = (summary_[w / 64] >> (w % 64)) & 1U;
    if (bit != (words_[w] != 0)) fail("summary bit of word " + std::to_string(w) + " disagrees");
  }
  for (const Block* b : large_) {
    if (b->segment->small) fail("small-segment block in the large set");
    ++count;
    bytes += b->bytes;
  }
  if (count != count_ || bytes != bytes_)
    fail("block count or byte total disagrees with the lists");
}

}  // namespace acb::alloc
