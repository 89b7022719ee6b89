// ScopedEnv: environment variables set (or unset) for one scope of a test,
// the old values put back, newest first, when it ends. Tests run their cases
// on one thread, so nothing else reads the environment meanwhile.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

namespace acb_test {

class ScopedEnv {
 public:
  ScopedEnv() = default;
  /// Sets `name` to `value` for this scope.
  ScopedEnv(const char* name, const std::string& value) { set(name, value.c_str()); }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->was_set) {
        ::setenv(it->name.c_str(), it->value.c_str(), 1);
      } else {
        ::unsetenv(it->name.c_str());
      }
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

  /// Sets `name` to `value` (nullptr: unsets it) until the scope ends.
  void set(const char* name, const char* value) {
    const char* old = std::getenv(name);
    saved_.push_back({name, old != nullptr, old != nullptr ? old : ""});
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }

 private:
  struct Saved {
    std::string name;
    bool was_set;
    std::string value;
  };
  std::vector<Saved> saved_;
};

}  // namespace acb_test
