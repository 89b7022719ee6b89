// JsonText: JSON written straight into a string, for the replies the broker
// sends most (`status`), where building an nlohmann::json tree first cost most
// of the broker's time under a stream of requests (a tree node and a map entry
// per field, freed again after one dump).
//
// The caller writes the structure (keys are string literals the code owns,
// so they are written as they are); values written through string() are
// escaped as nlohmann::json::dump does with error_handler_t::replace: a string
// of printable ASCII without quotes or backslashes is copied as it is, any
// other goes through nlohmann's own serializer, so escaping and the U+FFFD
// replacement of bytes that are not UTF-8 live in one place.
//
// Thread-safety: none (one reply, one thread).
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace acb::broker {

class JsonText {
 public:
  /// `"key":`; a comma first unless the enclosing object or array just opened.
  JsonText& key(std::string_view literal);
  JsonText& begin_object();
  JsonText& end_object();
  JsonText& begin_array();
  JsonText& end_array();
  JsonText& string(std::string_view text);
  /// Any integer type (the snapshot's ids, counts and byte sizes).
  template <typename Int, typename = std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>>>
  JsonText& number(Int value) {
    before_value();
    char digits[24];
    const auto result = std::to_chars(digits, digits + sizeof digits, value);
    out_.append(digits, result.ptr);
    return *this;
  }
  JsonText& boolean(bool value);
  JsonText& null();

  /// The text so far; valid JSON once every object and array is closed.
  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void before_value();
  std::string out_;
  bool first_ = true;        // no comma before the next member or element
  bool after_key_ = false;   // the next value belongs to the key just written
};

}  // namespace acb::broker
