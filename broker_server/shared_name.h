// SharedName: an immutable string held once and shared by every record that
// refers to it.
//
// A client's name is stored once, in its ClientRec; the lease slices of the
// timeline and the snapshots the server builds for `status` and `trace` hold
// the same buffer, so ten thousand leases of one client cost one name, and a
// snapshot copies pointers, not bytes. It compares and converts like the
// std::string it holds.
//
// Thread-safety: as std::shared_ptr<const std::string> (the arbiter's one thread).
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace acb::broker {

class SharedName {
 public:
  SharedName() = default;
  explicit SharedName(std::string text) : text_(std::make_shared<const std::string>(std::move(text))) {}

  const std::string& str() const { return text_ ? *text_ : empty(); }
  operator const std::string&() const { return str(); }  // NOLINT: reads as the string it is
  /// True when both refer to the same stored buffer (not merely equal text).
  bool shares_with(const SharedName& other) const { return text_ == other.text_; }

  friend bool operator==(const SharedName& a, std::string_view b) { return a.str() == b; }
  friend std::ostream& operator<<(std::ostream& out, const SharedName& n) { return out << n.str(); }

 private:
  static const std::string& empty() {
    static const std::string kEmpty;
    return kEmpty;
  }
  std::shared_ptr<const std::string> text_;
};

}  // namespace acb::broker
