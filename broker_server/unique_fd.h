// UniqueFd: a file descriptor closed when its owner goes, on every return and
// throw of the function that opened it.
//
// Thread-safety: none; one owner.
#pragma once

#include <unistd.h>

namespace acb::broker {

class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace acb::broker
