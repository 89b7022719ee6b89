// FrameParser and parse_message: good, incomplete and bad input, however it is split.
#include <random>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "common/frame.h"

using acb::wire::FrameParser;
using Result = FrameParser::Result;

namespace {

std::string header(std::uint32_t size) {
  return std::string{static_cast<char>(size >> 24), static_cast<char>((size >> 16) & 0xff),
                     static_cast<char>((size >> 8) & 0xff), static_cast<char>(size & 0xff)};
}

void feed(FrameParser& p, const std::string& bytes) { p.feed(bytes.data(), bytes.size()); }

}  // namespace

TEST_CASE("a valid frame round-trips through encode_message and the parser") {
  FrameParser parser;
  feed(parser, acb::wire::encode_message({{"op", "hello"}, {"versions", {1}}}));
  std::string payload;
  REQUIRE(parser.next(payload) == Result::good);
  std::string error;
  auto message = acb::wire::parse_message(payload, error);
  REQUIRE(message);
  CHECK((*message)["op"] == "hello");
  CHECK((*message)["versions"][0] == 1);
  CHECK(parser.next(payload) == Result::incomplete);
  CHECK(parser.buffered_bytes() == 0);
}

TEST_CASE("a frame split across feeds byte by byte is assembled once complete") {
  const std::string frame = acb::wire::encode_message({{"op", "acquire"}, {"need_bytes", 12345}});
  FrameParser parser;
  std::string payload;
  for (std::size_t i = 0; i + 1 < frame.size(); ++i) {
    parser.feed(&frame[i], 1);
    REQUIRE(parser.next(payload) == Result::incomplete);
  }
  parser.feed(&frame.back(), 1);
  REQUIRE(parser.next(payload) == Result::good);
  CHECK(payload == frame.substr(acb::wire::kHeaderBytes));
}

TEST_CASE("many frames in one feed come out in order, with random splits too") {
  std::string stream;
  std::vector<std::string> expected;
  for (int i = 0; i < 500; ++i) {
    const std::string payload = nlohmann::json{{"op", "heartbeat"}, {"i", i}, {"pad", std::string(i % 37, 'x')}}.dump();
    expected.push_back(payload);
    stream += acb::wire::encode_frame(payload);
  }
  SECTION("one feed") {
    FrameParser parser;
    feed(parser, stream);
    std::string payload;
    for (const auto& e : expected) {
      REQUIRE(parser.next(payload) == Result::good);
      REQUIRE(payload == e);
    }
    CHECK(parser.next(payload) == Result::incomplete);
  }
  SECTION("random chunks (fixed seed)") {
    std::mt19937 rng(42);
    FrameParser parser;
    std::vector<std::string> got;
    std::size_t offset = 0;
    std::string payload;
    while (offset < stream.size()) {
      const std::size_t n = std::min<std::size_t>(stream.size() - offset, rng() % 300 + 1);
      parser.feed(stream.data() + offset, n);
      offset += n;
      while (parser.next(payload) == Result::good) got.push_back(payload);
    }
    CHECK(got == expected);
    CHECK(parser.buffered_bytes() == 0);
  }
}

TEST_CASE("a truncated frame stays incomplete and keeps its bytes") {
  const std::string frame = acb::wire::encode_message({{"op", "release"}});
  FrameParser parser;
  feed(parser, frame.substr(0, frame.size() - 3));
  std::string payload;
  CHECK(parser.next(payload) == Result::incomplete);
  CHECK(parser.buffered_bytes() == frame.size() - 3);
  feed(parser, header(0).substr(0, 2));  // a truncated header is incomplete too
  CHECK(parser.next(payload) == Result::incomplete);
}

TEST_CASE("an oversized length is bad at once, before the payload arrives, and stays bad") {
  FrameParser parser(1024);
  feed(parser, acb::wire::encode_frame(std::string(1024, 'a'), 1024));
  std::string payload;
  REQUIRE(parser.next(payload) == Result::good);
  CHECK(payload.size() == 1024);
  feed(parser, header(1025));
  CHECK(parser.next(payload) == Result::bad);
  CHECK(parser.error().find("1025") != std::string::npos);
  CHECK(parser.error().find("1024") != std::string::npos);
  feed(parser, acb::wire::encode_message({{"op", "heartbeat"}}));
  CHECK(parser.next(payload) == Result::bad);

  FrameParser default_max;
  feed(default_max, header(acb::wire::kMaxFrameBytes + 1));
  CHECK(default_max.next(payload) == Result::bad);
  FrameParser huge;
  feed(huge, header(0xffffffffu));
  CHECK(huge.next(payload) == Result::bad);
}

TEST_CASE("encode_frame refuses payloads above the maximum with the sizes in the message") {
  CHECK_THROWS_AS(acb::wire::encode_frame(std::string(11, 'x'), 10), std::length_error);
  try {
    (void)acb::wire::encode_frame(std::string(11, 'x'), 10);
  } catch (const std::length_error& e) {
    CHECK(std::string(e.what()).find("11") != std::string::npos);
  }
}

TEST_CASE("an empty payload is a frame; as a message it is not JSON") {
  FrameParser parser;
  feed(parser, header(0));
  std::string payload = "junk";
  REQUIRE(parser.next(payload) == Result::good);
  CHECK(payload.empty());
  std::string error;
  CHECK_FALSE(acb::wire::parse_message(payload, error));
  CHECK(error.find("JSON") != std::string::npos);
}

TEST_CASE("parse_message rejects garbage, non-objects and a missing or non-string op") {
  struct Case { const char* payload; const char* error; };
  const Case cases[] = {
      {"\x01\x02garbage\xff", "not valid JSON"},
      {"{\"op\":\"hello\"", "not valid JSON"},
      {"[1,2,3]", "not a JSON object"},
      {"\"hello\"", "not a JSON object"},
      {"42", "not a JSON object"},
      {"null", "not a JSON object"},
      {"{}", "\"op\""},
      {"{\"name\":\"x\"}", "\"op\""},
      {"{\"op\":7}", "\"op\""},
      {"{\"op\":null}", "\"op\""},
      {"{\"op\":[\"hello\"]}", "\"op\""},
  };
  for (const auto& c : cases) {
    INFO(c.payload);
    std::string error;
    CHECK_FALSE(acb::wire::parse_message(c.payload, error));
    CHECK(error.find(c.error) != std::string::npos);
  }
  std::string error;
  auto ok = acb::wire::parse_message(R"({"op":"unknown_but_well_formed","x":[1]})", error);
  REQUIRE(ok);  // unknown ops are the server's business, not the framing's
  CHECK((*ok)["op"] == "unknown_but_well_formed");
}

TEST_CASE("random garbage never crashes the parser and never yields a frame above the maximum") {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    FrameParser parser(4096);
    std::string bytes(rng() % 2048, '\0');
    for (auto& b : bytes) b = static_cast<char>(rng());
    feed(parser, bytes);
    std::string payload;
    std::size_t consumed = 0;
    for (;;) {
      const auto r = parser.next(payload);
      if (r != Result::good) break;
      REQUIRE(payload.size() <= 4096);
      consumed += acb::wire::kHeaderBytes + payload.size();
      std::string error;
      (void)acb::wire::parse_message(payload, error);
    }
    CHECK(consumed <= bytes.size());
  }
}

TEST_CASE("encode_message replaces invalid UTF-8 instead of throwing") {
  // A string cut inside "é" (lead byte 0xc3 without its 0xa9), a stray continuation byte, a bad lead byte.
  const nlohmann::json message = {{"op", "error"}, {"reason", std::string("a\xc3", 2) + "x\xa9y\xff"}};
  std::string frame;
  REQUIRE_NOTHROW(frame = acb::wire::encode_message(message));
  acb::wire::FrameParser parser;
  parser.feed(frame.data(), frame.size());
  std::string payload;
  REQUIRE(parser.next(payload) == acb::wire::FrameParser::Result::good);
  const auto decoded = nlohmann::json::parse(payload);  // parse() accepts only valid UTF-8
  const std::string replacement = "\xef\xbf\xbd";      // U+FFFD
  CHECK(decoded["reason"] == "a" + replacement + "x" + replacement + "y" + replacement);
}
