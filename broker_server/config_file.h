// Reading the --config file without trusting what sits at its path.
//
// The broker reads its configuration at start and again on SIGHUP, on the
// one thread that also serves every client; whatever is found at the path
// must not stall it. So the file is opened non-blocking (a FIFO or a device
// node then neither blocks the open nor a read), must be a regular file
// (fstat after the open, so a swap between a check and the open cannot slip
// something else in), and is read up to kMaxConfigFileBytes only. A symbolic
// link is followed: configuration management commonly links the file into
// place, and whoever can replace the link can replace the file anyway.
//
// Thread-safety: pure function of the file system.
#pragma once

#include <cstddef>
#include <string>

namespace acb::broker {

/// The largest config file read; a bigger one is refused (a config is a few KiB).
inline constexpr std::size_t kMaxConfigFileBytes = 1 << 20;

/// The file's contents. Throws ConfigError (config.h) naming the path and why:
/// missing, unreadable, not a regular file, or larger than kMaxConfigFileBytes.
std::string read_config_file(const std::string& path);

}  // namespace acb::broker
