#include "broker_server/json_text.h"

#include <nlohmann/json.hpp>

namespace acb::broker {

namespace {

// Bytes that JSON needs escaped or that may start a sequence that is not
// UTF-8: any of them sends the string to nlohmann's serializer.
bool copies_as_is(std::string_view text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

}  // namespace

void JsonText::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_) out_ += ',';
  first_ = false;
}

JsonText& JsonText::key(std::string_view literal) {
  if (!first_) out_ += ',';
  first_ = false;
  out_ += '"';
  out_ += literal;
  out_ += "\":";
  after_key_ = true;
  return *this;
}

JsonText& JsonText::begin_object() {
  before_value();
  out_ += '{';
  first_ = true;
  return *this;
}

JsonText& JsonText::end_object() {
  out_ += '}';
  first_ = false;
  return *this;
}

JsonText& JsonText::begin_array() {
  before_value();
  out_ += '[';
  first_ = true;
  return *this;
}

JsonText& JsonText::end_array() {
  out_ += ']';
  first_ = false;
  return *this;
}

JsonText& JsonText::string(std::string_view text) {
  before_value();
  if (copies_as_is(text)) {
    out_ += '"';
    out_ += text;
    out_ += '"';
  } else {
    out_ += nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return *this;
}

JsonText& JsonText::boolean(bool value) {
  before_value();
  out_ += value ? "true" : "false";
  return *this;
}

JsonText& JsonText::null() {
  before_value();
  out_ += "null";
  return *this;
}

}  // namespace acb::broker
