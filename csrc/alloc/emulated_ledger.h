// The emulated device's capacity ledger, shared by every process that names
// the same emulated device.
//
// It lives in /dev/shm/acb-emulated-<name>: a header and a fixed table of
// per-process slots {pid, start time, bytes per device}, read and written
// under flock(LOCK_EX). A process charges its own slot before creating
// physical memory and uncharges it on release, so an over-commit across
// processes fails exactly as on a real device.
//
// Why slots and not one counter: a process killed with SIGKILL never
// uncharges. Its flock dies with it, and the next process that takes the lock
// reclaims every slot whose pid is gone (kill(pid, 0) == ESRCH), is a zombie,
// or was reused by a newer process (its start time differs).
//
// Several ledgers in one process (several drivers naming the same device)
// share that process's slot and add to it; each ledger has its own file
// description, so flock excludes them from each other as it does processes.
// A ledger must not be used from a child after fork (the child shares the
// parent's file description, hence its lock): every method then throws
// DriverError, and the child opens its own ledger.
//
// Thread-safety: all methods are thread-safe (a mutex plus the flock).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace acb::alloc {

class EmulatedLedger {
 public:
  /// Most devices one emulated device name may have.
  static constexpr int kMaxDevices = 16;
  /// Most processes that may hold memory on one emulated device at once.
  static constexpr int kMaxSlots = 256;

  /// Opens (creating if needed) /dev/shm/acb-emulated-<name>. Throws
  /// DriverError naming the file when it cannot be opened or is not a ledger.
  explicit EmulatedLedger(const std::string& name);
  ~EmulatedLedger();
  EmulatedLedger(const EmulatedLedger&) = delete;
  EmulatedLedger& operator=(const EmulatedLedger&) = delete;

  /// Result of a charge attempt; used_bytes is what all live processes held
  /// on the device before the attempt.
  struct Charge {
    bool granted = false;
    std::size_t used_bytes = 0;
  };

  /// Adds `bytes` to this process's share of `device` when the total stays
  /// within `capacity_bytes`. Throws DriverError when the slot table is full.
  Charge try_charge(int device, std::size_t bytes, std::size_t capacity_bytes);
  /// Gives back `bytes` of this process's share of `device`.
  void uncharge(int device, std::size_t bytes);
  /// Bytes held on `device` by all live processes (dead ones are reclaimed first).
  std::size_t used_bytes(int device);

  /// True in the process that opened the ledger, false in a forked child.
  bool owned_by_this_process() const;

 private:
  struct Layout;
  class Lock;

  Layout* layout() const;
  void reclaim_dead_slots();
  int find_own_slot(bool create);

  std::string path_;
  pid_t owner_pid_;
  int fd_ = -1;
  void* mapping_ = nullptr;
  std::size_t mapping_bytes_ = 0;
  std::mutex mutex_;
};

}  // namespace acb::alloc
