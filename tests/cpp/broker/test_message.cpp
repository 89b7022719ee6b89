// validate_message: every op, its required members and their types.
#include <string>

#include "acb_catch.hpp"
#include "broker_server/message.h"

using namespace acb::broker;
using nlohmann::json;

namespace {

std::string rejection(const json& message) {
  try {
    (void)validate_message(message);
  } catch (const ProtocolError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("hello: members, defaults and roles") {
  auto m = validate_message(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab"})"));
  const auto& h = std::get<HelloMessage>(m);
  CHECK(h.versions == std::vector<std::int64_t>{2});
  CHECK(h.client_nonce[31] == 0xab);
  CHECK(h.client_nonce[0] == 0);
  CHECK_FALSE(h.admin);
  CHECK(h.client.priority == Priority::training);
  CHECK(h.client.need_bytes == 0);
  CHECK_FALSE(h.client.pinned_device);

  auto full = validate_message(json::parse(
      R"({"op":"hello","versions":[2,3],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","name":"n","pid":7,"role":"admin","priority":"inference","need_bytes":1024,"device":2,"extra":"ignored"})"));
  const auto& f = std::get<HelloMessage>(full);
  CHECK(f.admin);
  CHECK(f.client.name == "n");
  CHECK(f.client.pid == 7);
  CHECK(f.client.priority == Priority::inference);
  CHECK(f.client.need_bytes == 1024);
  CHECK(f.client.pinned_device == 2);
  CHECK_FALSE(f.client.fixed);
  CHECK(std::get<HelloMessage>(validate_message(
                  json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","device":1,"fixed":true})")))
            .client.fixed);
  CHECK_FALSE(std::get<HelloMessage>(validate_message(
                  json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","device":-1})")))
                  .client.pinned_device);
  CHECK(std::string(op_name(full)) == "hello");
  CHECK_FALSE(seq_of(full));
}

TEST_CASE("hello: wrong or missing members are named") {
  CHECK(rejection(json::parse(R"({"op":"hello","client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab"})")).find("versions") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":1,"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab"})")).find("versions") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":["1"],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab"})")).find("versions") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2]})")).find("client_nonce") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":5})")).find("client_nonce") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"abc"})")).find("64 lowercase hex") !=
        std::string::npos);
  CHECK(rejection({{"op", "hello"}, {"versions", {2}}, {"client_nonce", std::string(64, 'A')}}).find("client_nonce") !=
        std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","role":"root"})")).find("role") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","priority":"urgent"})")).find("priority") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","need_bytes":-1})")).find("need_bytes") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","need_bytes":1.5})")).find("need_bytes") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","pid":true})")).find("pid") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","device":-2})")).find("device") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","device":4294967296})")).find("device") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","device":0,"fixed":1})")).find("fixed") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],"client_nonce":"00000000000000000000000000000000000000000000000000000000000000ab","fixed":true})")).find("fixed") != std::string::npos);
}

TEST_CASE("hello: a gang names the job, its ranks on this node and the rank's own") {
  json hello = {{"op", "hello"}, {"versions", {2}}, {"client_nonce", std::string(62, '0') + "ab"}};
  CHECK_FALSE(std::get<HelloMessage>(validate_message(hello)).client.gang);
  hello["gang"] = "torchelastic_abc";
  hello["local_world_size"] = 2;
  auto g = std::get<HelloMessage>(validate_message(hello)).client.gang;
  REQUIRE(g);
  CHECK(g->job == "torchelastic_abc");
  CHECK(g->local_world_size == 2);
  CHECK_FALSE(g->local_rank);
  hello["local_rank"] = 1;
  CHECK(std::get<HelloMessage>(validate_message(hello)).client.gang->local_rank == 1u);

  auto without = [&](const char* key) {
    json m = hello;
    m.erase(key);
    return rejection(m);
  };
  auto with = [&](const char* key, json value) {
    json m = hello;
    m[key] = std::move(value);
    return rejection(m);
  };
  CHECK(without("gang") == "\"hello\": member \"local_world_size\" needs a \"gang\"");
  CHECK(without("local_world_size") ==
        "\"hello\": member \"local_world_size\" is missing (integer >= 1 expected with \"gang\")");
  CHECK(with("gang", "") == "\"hello\": member \"gang\" must not be empty (the job key)");
  CHECK(with("gang", 5).find("\"gang\" must be a string") != std::string::npos);
  CHECK(with("gang", std::string(kMaxStringBytes + 1, 'j')).find("longer than the limit") != std::string::npos);
  CHECK(with("local_world_size", 0) == "\"hello\": member \"local_world_size\" is out of range");
  CHECK(with("local_world_size", 4294967296ll) == "\"hello\": member \"local_world_size\" is out of range");
  CHECK(with("local_rank", 2) == "\"hello\": member \"local_rank\" must be below \"local_world_size\"");
  CHECK(with("local_rank", -1) == "\"hello\": member \"local_rank\" is out of range");
  json rank_only = hello;
  rank_only.erase("gang");
  rank_only.erase("local_world_size");
  CHECK(rejection(rank_only) == "\"hello\": member \"local_rank\" needs a \"gang\"");
}

TEST_CASE("hello: a token in clear (protocol version 1) is refused, whatever else it says") {
  const auto v1 = rejection(json::parse(R"({"op":"hello","versions":[1],"token":"t"})"));
  CHECK(v1.find("token in clear") != std::string::npos);
  CHECK(v1.find("version 1") != std::string::npos);
  CHECK(v1.find("upgrade") != std::string::npos);
  CHECK(rejection(json::parse(R"({"op":"hello","versions":[2],)" + std::string(R"("client_nonce":")") +
                              std::string(64, '0') + R"(","token":"t"})"))
            .find("token in clear") != std::string::npos);
}

TEST_CASE("auth: the client's proof as 64 lowercase hex digits") {
  const std::string hex = std::string(62, '0') + "7f";
  const auto m = validate_message({{"op", "auth"}, {"client_proof", hex}});
  CHECK(std::get<AuthMessage>(m).client_proof[31] == 0x7f);
  CHECK(std::string(op_name(m)) == "auth");
  CHECK_FALSE(seq_of(m));
  CHECK(rejection({{"op", "auth"}}).find("client_proof") != std::string::npos);
  CHECK(rejection({{"op", "auth"}, {"client_proof", 1}}).find("client_proof") != std::string::npos);
  CHECK(rejection({{"op", "auth"}, {"client_proof", hex + "0"}}).find("client_proof") != std::string::npos);
}

TEST_CASE("lease ops: optional and required byte counts") {
  CHECK_FALSE(std::get<AcquireMessage>(validate_message({{"op", "acquire"}})).need_bytes);
  CHECK(std::get<AcquireMessage>(validate_message({{"op", "acquire"}, {"need_bytes", 5}})).need_bytes == 5u);
  CHECK(std::get<ReleaseMessage>(validate_message({{"op", "release"}, {"resident_bytes", 9}})).resident_bytes == 9u);
  CHECK(std::get<ResidencyMessage>(validate_message({{"op", "residency"}, {"resident_bytes", 0}})).resident_bytes == 0u);
  const std::uint64_t big = 18446744073709551615ull;
  CHECK(std::get<ResidencyMessage>(validate_message({{"op", "residency"}, {"resident_bytes", big}})).resident_bytes == big);
  CHECK(rejection({{"op", "residency"}}).find("resident_bytes") != std::string::npos);
  CHECK(rejection({{"op", "residency"}, {"resident_bytes", "1"}}).find("resident_bytes") != std::string::npos);
  // pinned (acb.disable()): optional, false unless said.
  CHECK_FALSE(std::get<ResidencyMessage>(validate_message({{"op", "residency"}, {"resident_bytes", 1}})).pinned);
  CHECK(std::get<ResidencyMessage>(
            validate_message({{"op", "residency"}, {"resident_bytes", 1}, {"pinned", true}})).pinned);
  CHECK(std::get<ReleaseMessage>(validate_message({{"op", "release"}, {"resident_bytes", 1}, {"pinned", true}})).pinned);
  CHECK(rejection({{"op", "residency"}, {"resident_bytes", 1}, {"pinned", 1}}).find("pinned") != std::string::npos);
  CHECK(rejection({{"op", "acquire"}, {"need_bytes", -3}}).find("need_bytes") != std::string::npos);
  CHECK(rejection({{"op", "release"}, {"resident_bytes", json::array()}}).find("resident_bytes") != std::string::npos);
  CHECK(std::holds_alternative<HeartbeatMessage>(validate_message({{"op", "heartbeat"}})));
}

TEST_CASE("requests carry an integer seq and their members") {
  CHECK(seq_of(validate_message({{"op", "status"}, {"seq", 41}})) == 41);
  CHECK(rejection({{"op", "status"}}).find("seq") != std::string::npos);
  CHECK(rejection({{"op", "status"}, {"seq", "1"}}).find("seq") != std::string::npos);

  auto sp = std::get<SetPriorityMessage>(validate_message({{"op", "set_priority"}, {"seq", 1}, {"priority", "batch"}}));
  CHECK(sp.priority == Priority::batch);
  CHECK_FALSE(sp.client_id);
  CHECK(std::get<SetPriorityMessage>(
            validate_message({{"op", "set_priority"}, {"seq", 1}, {"priority", "batch"}, {"client_id", 4}}))
            .client_id == 4u);
  CHECK(rejection({{"op", "set_priority"}, {"seq", 1}}).find("priority") != std::string::npos);
  CHECK(rejection({{"op", "set_priority"}, {"seq", 1}, {"priority", "batch"}, {"client_id", -1}}).find("client_id") !=
        std::string::npos);

  auto q = std::get<SetQuotaMessage>(validate_message({{"op", "set_quota"}, {"seq", 2}, {"client_id", 3}, {"quota_bytes", 10}}));
  CHECK(q.client_id == 3u);
  CHECK(q.quota_bytes == 10u);
  CHECK(rejection({{"op", "set_quota"}, {"seq", 2}, {"quota_bytes", 10}}).find("client_id") != std::string::npos);

  CHECK(std::get<SetQuantumMessage>(validate_message({{"op", "set_quantum"}, {"seq", 3}, {"quantum_ms", 50}})).quantum_ms == 50u);
  CHECK(rejection({{"op", "set_quantum"}, {"seq", 3}, {"quantum_ms", 0}}).find("quantum_ms") != std::string::npos);

  auto add = std::get<AddDeviceMessage>(validate_message({{"op", "add_device"}, {"seq", 4}, {"capacity_bytes", 1024}, {"name", "x"}}));
  CHECK(add.capacity_bytes == 1024u);
  CHECK(add.name == "x");
  CHECK(rejection({{"op", "add_device"}, {"seq", 4}}).find("capacity_bytes") != std::string::npos);

  CHECK(std::get<DrainDeviceMessage>(validate_message({{"op", "drain_device"}, {"seq", 5}, {"device", 1}})).device == 1);
  CHECK(std::get<RemoveDeviceMessage>(validate_message({{"op", "remove_device"}, {"seq", 6}, {"device", 0}})).device == 0);
  CHECK(rejection({{"op", "drain_device"}, {"seq", 5}, {"device", "0"}}).find("device") != std::string::npos);
  CHECK(rejection({{"op", "remove_device"}, {"seq", 6}}).find("device") != std::string::npos);
  CHECK(seq_of(validate_message({{"op", "trace"}, {"seq", -7}})) == -7);
}

TEST_CASE("unknown ops and non-messages are protocol errors") {
  CHECK(rejection({{"op", "launch"}}).find("unknown op \"launch\"") != std::string::npos);
  CHECK(rejection({{"op", std::string(1000, 'x')}}).size() < 200);
  CHECK(rejection(json::array({1})).find("not a JSON object") != std::string::npos);
  CHECK(rejection({{"op", 1}}).find("\"op\"") != std::string::npos);
  CHECK(rejection({{"name", "x"}}).find("\"op\"") != std::string::npos);
}

TEST_CASE("version negotiation picks the highest common version; version 1 is no longer spoken") {
  CHECK(negotiate_version({2}) == 2);
  CHECK(negotiate_version({3, 1, 2}) == 2);
  CHECK_FALSE(negotiate_version({1}));
  CHECK_FALSE(negotiate_version({}));
  CHECK_FALSE(negotiate_version({0, 3, -1}));
}

TEST_CASE("string members are bounded by kMaxStringBytes, and the error names the member and the limit") {
  const std::string at_limit(kMaxStringBytes, 'n');
  const std::string over(kMaxStringBytes + 1, 'n');
  json hello = {{"op", "hello"},
                {"versions", {2}},
                {"client_nonce", "00000000000000000000000000000000000000000000000000000000000000ab"},
                {"name", at_limit}};
  CHECK(std::get<HelloMessage>(validate_message(hello)).client.name == at_limit);
  hello["name"] = over;
  const std::string why = rejection(hello);
  CHECK(why.find("\"name\"") != std::string::npos);
  CHECK(why.find(std::to_string(kMaxStringBytes)) != std::string::npos);
  // A megabyte name is refused as cheaply: nothing of it is copied into the message.
  hello["name"] = std::string(1 << 20, 'n');
  CHECK(rejection(hello).find("\"name\"") != std::string::npos);
  hello["name"] = "n";
  hello["role"] = over;
  CHECK(rejection(hello).find(std::to_string(kMaxStringBytes)) != std::string::npos);  // the limit, not "must be client or admin"
  const json add = {{"op", "add_device"}, {"seq", 1}, {"capacity_bytes", 0}, {"name", over}};
  CHECK(rejection(add).find("\"name\"") != std::string::npos);
}
