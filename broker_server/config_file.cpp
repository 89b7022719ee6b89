#include "broker_server/config_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "broker_server/config.h"
#include "broker_server/unique_fd.h"

namespace acb::broker {

std::string read_config_file(const std::string& path) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) throw ConfigError("cannot read config file " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    throw ConfigError("cannot stat config file " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw ConfigError("config file " + path + " is not a regular file (a FIFO, device or directory is refused)");
  if (static_cast<std::uint64_t>(st.st_size) > kMaxConfigFileBytes)
    throw ConfigError("config file " + path + " is " + std::to_string(st.st_size) + " bytes, above the limit of " +
                      std::to_string(kMaxConfigFileBytes) + " bytes");
  std::string text;
  char buffer[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ConfigError("cannot read config file " + path + ": " + std::strerror(errno));
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    // It may grow while read: the limit holds for what is read, not only for what fstat said.
    if (text.size() > kMaxConfigFileBytes)
      throw ConfigError("config file " + path + " grew above the limit of " + std::to_string(kMaxConfigFileBytes) +
                        " bytes while read");
  }
  return text;
}

}  // namespace acb::broker
