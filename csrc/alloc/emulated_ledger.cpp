#include "alloc/emulated_ledger.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "alloc/driver.h"

namespace acb::alloc {

namespace {

constexpr std::uint64_t kMagic = 0x6163622d6c656467ULL;  // "acb-ledg"
constexpr std::uint32_t kVersion = 1;

DriverError ledger_error(const std::string& call, const std::string& path, int err) {
  return DriverError(call, err,
                     "emulated ledger " + call + "(" + path + ") failed: " + std::strerror(err) +
                         " (" + std::to_string(err) + ")");
}

/// Start time (clock ticks since boot, /proc/<pid>/stat field 22) and whether
/// the process is a zombie. start_ticks == 0 when /proc cannot tell.
struct ProcState {
  std::uint64_t start_ticks = 0;
  bool zombie = false;
};

ProcState read_proc_state(pid_t pid) {
  ProcState state;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return state;
  // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return state;
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  // Fields 3.. follow; field 3 is the state, field 22 the start time.
  for (int index = 3; fields >> field; ++index) {
    if (index == 3) state.zombie = field == "Z" || field == "X";
    if (index == 22) {
      state.start_ticks = std::stoull(field);
      break;
    }
  }
  return state;
}

}  // namespace

struct EmulatedLedger::Layout {
  struct Slot {
    std::int32_t pid;
    std::uint32_t unused;
    std::uint64_t start_ticks;
    std::uint64_t bytes[kMaxDevices];
  };
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t slot_count;
  Slot slots[kMaxSlots];
};

/// Holds the file lock; constructed with mutex_ already held.
class EmulatedLedger::Lock {
 public:
  Lock(int fd, const std::string& path, pid_t owner) : fd_(fd) {
    // After fork the child shares this file description, hence the parent's
    // flock: locking (and above all unlocking) here would break the parent's
    // critical section.
    if (::getpid() != owner)
      throw DriverError("flock", EPERM,
                        "emulated ledger " + path + " used in a child after fork (pid " +
                            std::to_string(::getpid()) + ", opened by pid " +
                            std::to_string(owner) + "): make a new driver in the child");
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) throw ledger_error("flock", path, errno);
    }
  }
  ~Lock() { ::flock(fd_, LOCK_UN); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  int fd_;
};

EmulatedLedger::EmulatedLedger(const std::string& name)
    : path_("/dev/shm/acb-emulated-" + name), owner_pid_(::getpid()) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd_ < 0) throw ledger_error("open", path_, errno);
  ::fchmod(fd_, 0666);  // best effort: let other users share the device despite the umask
  try {
    Lock lock(fd_, path_, owner_pid_);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw ledger_error("fstat", path_, errno);
    mapping_bytes_ = sizeof(Layout);
    if (st.st_size == 0 && ::ftruncate(fd_, static_cast<off_t>(mapping_bytes_)) != 0)
      throw ledger_error("ftruncate", path_, errno);
    if (st.st_size != 0 && static_cast<std::size_t>(st.st_size) != mapping_bytes_)
      throw DriverError("open", EINVAL,
                        "emulated ledger " + path_ + " has " + std::to_string(st.st_size) +
                            " bytes, expected " + std::to_string(mapping_bytes_) +
                            ": not an acb ledger of this version (remove it)");
    mapping_ = ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (mapping_ == MAP_FAILED) {
      mapping_ = nullptr;
      throw ledger_error("mmap", path_, errno);
    }
    Layout* l = layout();
    if (l->magic == 0) {
      // Fresh file (or its creator died before writing the header): all slots are zero.
      std::memset(l, 0, sizeof(Layout));
      l->version = kVersion;
      l->slot_count = kMaxSlots;
      l->magic = kMagic;
    } else if (l->magic != kMagic || l->version != kVersion || l->slot_count != kMaxSlots) {
      throw DriverError(
          "open", EINVAL,
          "emulated ledger " + path_ + " is not an acb ledger of this version (remove it)");
    }
  } catch (...) {
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
    ::close(fd_);
    throw;
  }
}

EmulatedLedger::~EmulatedLedger() {
  ::munmap(mapping_, mapping_bytes_);
  ::close(fd_);
}

bool EmulatedLedger::owned_by_this_process() const { return ::getpid() == owner_pid_; }

EmulatedLedger::Layout* EmulatedLedger::layout() const { return static_cast<Layout*>(mapping_); }

void EmulatedLedger::reclaim_dead_slots() {
  const pid_t self = ::getpid();
  for (auto& slot : layout()->slots) {
    if (slot.pid == 0 || slot.pid == self) continue;
    bool dead = ::kill(slot.pid, 0) != 0 && errno == ESRCH;
    if (!dead) {
      const ProcState state = read_proc_state(slot.pid);
      dead = state.zombie || (state.start_ticks != 0 && slot.start_ticks != 0 &&
                              state.start_ticks != slot.start_ticks);
    }
    if (dead) std::memset(&slot, 0, sizeof(slot));
  }
}

int EmulatedLedger::find_own_slot(bool create) {
  const pid_t self = ::getpid();
  Layout* l = layout();
  int free_index = -1;
  for (int i = 0; i < kMaxSlots; ++i) {
    if (l->slots[i].pid == self) return i;
    if (l->slots[i].pid == 0 && free_index < 0) free_index = i;
  }
  if (!create) return -1;
  if (free_index < 0)
    throw DriverError("charge", ENOSPC,
                      "emulated ledger " + path_ +
                          " has no free slot: " + std::to_string(kMaxSlots) +
                          " processes already hold memory on this emulated device");
  auto& slot = l->slots[free_index];
  std::memset(&slot, 0, sizeof(slot));
  slot.pid = self;
  slot.start_ticks = read_proc_state(self).start_ticks;
  return free_index;
}

EmulatedLedger::Charge EmulatedLedger::try_charge(int device, std::size_t bytes,
                                                  std::size_t capacity_bytes) {
  std::lock_guard<std::mutex> guard(mutex_);
  Lock lock(fd_, path_, owner_pid_);
  reclaim_dead_slots();
  Charge charge;
  for (const auto& slot : layout()->slots) charge.used_bytes += slot.bytes[device];
  if (charge.used_bytes > capacity_bytes || bytes > capacity_bytes - charge.used_bytes)
    return charge;
  layout()->slots[find_own_slot(true)].bytes[device] += bytes;
  charge.granted = true;
  return charge;
}

void EmulatedLedger::uncharge(int device, std::size_t bytes) {
  std::lock_guard<std::mutex> guard(mutex_);
  Lock lock(fd_, path_, owner_pid_);
  const int index = find_own_slot(false);
  if (index < 0) return;
  auto& slot = layout()->slots[index];
  slot.bytes[device] = slot.bytes[device] > bytes ? slot.bytes[device] - bytes : 0;
  for (auto held : slot.bytes)
    if (held != 0) return;
  std::memset(&slot, 0, sizeof(slot));  // nothing held: free the slot for others
}

std::size_t EmulatedLedger::used_bytes(int device) {
  std::lock_guard<std::mutex> guard(mutex_);
  Lock lock(fd_, path_, owner_pid_);
  reclaim_dead_slots();
  std::size_t used = 0;
  for (const auto& slot : layout()->slots) used += slot.bytes[device];
  return used;
}

}  // namespace acb::alloc
