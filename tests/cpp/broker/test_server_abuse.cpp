// A real Server against hostile peers: input that once ended the process,
// frames before authentication, pipelining, and what a peer that does not
// read may cost. Each case checks that the broker stays up and that an
// honest client keeps its lease.
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "server_test_support.h"

using namespace acb::broker;
using namespace acb::broker::test;
using nlohmann::json;

namespace {

std::string e_acute_op() {
  std::string op = "a";
  for (int i = 0; i < 40; ++i) op += "\xc3\xa9";  // "é": the 64-byte cut once fell inside one
  return op;
}

// The bystander still holds its lease and is answered.
void check_holder(TestClient& bystander, const json& welcome) {
  bystander.send({{"op", "status"}, {"seq", 7}});
  const auto status = bystander.expect("status");
  CHECK(status["devices"][0]["holder"] == welcome["client_id"]);
}

}  // namespace

TEST_CASE("a multi-byte unknown op closes only its connection, before and after hello") {
  RunningServer server;
  TestClient bystander(server.port());
  const auto welcome = bystander.hello("bystander");
  bystander.send({{"op", "acquire"}});
  bystander.expect("grant");

  SECTION("before hello") {
    TestClient bad(server.port());
    bad.send({{"op", e_acute_op()}});
    const std::string reason = bad.expect_error_then_close();
    CHECK(reason.find("unknown op \"a\xc3\xa9") != std::string::npos);
  }
  SECTION("after hello") {
    TestClient bad(server.port());
    bad.hello("bad");
    bad.send({{"op", e_acute_op()}});
    CHECK(bad.expect_error_then_close().find("unknown op") != std::string::npos);
  }
  SECTION("invalid UTF-8 in a hello name and an op") {
    TestClient bad(server.port());
    bad.send_raw(acb::wire::encode_frame(R"({"op":"hello","versions":[1],"token":"x","name":")"
                                         "\xff\xc3\n"
                                         R"("})"));
    bad.expect_error_then_close();
    TestClient worse(server.port());
    worse.send_raw(acb::wire::encode_frame("{\"op\":\"\xc3\"}"));
    worse.expect_error_then_close();
  }
  check_holder(bystander, welcome);
}
