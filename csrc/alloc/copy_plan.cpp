#include "alloc/copy_plan.h"

namespace acb::alloc {

std::vector<CopyRange> plan_copies(const Block* first_block, DevicePtr segment_address,
                                   std::byte* backup, std::size_t max_gap_bytes) {
  std::vector<CopyRange> out;
  DevicePtr start = 0;  // of the open range
  DevicePtr end = 0;    // one past its last allocated byte (0: no open range)
  auto close = [&] {
    if (end == 0) return;
    out.push_back({start, backup + (start - segment_address), end - start});
    end = 0;
  };
  for (const Block* b = first_block; b != nullptr; b = b->next) {
    if (!b->allocated) continue;
    // Blocks tile the segment, so b->address - end is the free bytes between.
    if (end != 0 && b->address - end > max_gap_bytes) close();
    if (end == 0) start = b->address;
    end = b->address + b->bytes;
  }
  close();
  return out;
}

}  // namespace acb::alloc
