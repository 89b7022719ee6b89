// Copy plans: the byte ranges of a segment that an offload copies to its
// host backup and a restore copies back, as few ranges as the blocks allow.
//
// Copying many small blocks one by one is bound by the fixed cost of each
// copy (a driver call and a DMA setup, microseconds each), not by the link.
// So adjacent allocated blocks become one range, and two ranges separated by
// free blocks of at most `max_gap_bytes` in all become one range that
// includes the gap: copying the gap costs less than the copy it saves.
//
// Why copying a gap is safe, both ways (the one rule: no byte a program
// wrote is lost or overwritten):
//   - offload (device -> backup): the gap's bytes land in the backup at the
//     gap's offset, which holds no live data (the backup mirrors the segment
//     and only allocated blocks are ever read back from it as data).
//   - restore (backup -> device): the plan is made from the block list at
//     restore time, so a gap is free then; the segment was just mapped with
//     fresh physical memory, so nothing on the device can be overwritten, and
//     while it is offloaded no free block of it can be allocated (they are
//     in no pool) until the restore has finished. A block allocated at the
//     offload and freed since is free now: its old bytes are copied back
//     into free memory, which nobody may read.
// Ranges never overlap, so they may run in any order (as a batch does).
//
// Not thread-safe: reads a segment's blocks under the arena's mutex.
#pragma once

#include <cstddef>
#include <vector>

#include "alloc/block.h"
#include "alloc/driver.h"

namespace acb::alloc {

/// The copies for the blocks from `first_block` on (one segment, address
/// order) at `segment_address`, whose backup starts at `backup`: every
/// allocated byte in exactly one range, with free gaps of at most
/// `max_gap_bytes` between two allocated blocks included. Empty when no
/// block is allocated.
std::vector<CopyRange> plan_copies(const Block* first_block, DevicePtr segment_address,
                                   std::byte* backup, std::size_t max_gap_bytes);

}  // namespace acb::alloc
