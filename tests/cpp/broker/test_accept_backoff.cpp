// AcceptBackoff: which accept errors mean "out of resources", the delays
// while they go on, and the end of a burst.
#include <cerrno>

#include "acb_catch.hpp"
#include "broker_server/accept_backoff.h"

using namespace acb::broker;
using boost::system::error_code;
using boost::system::system_category;

TEST_CASE("out-of-resource errors back off; one lost connection does not") {
  for (int e : {EMFILE, ENFILE, ENOBUFS, ENOMEM}) CHECK(AcceptBackoff::is_resource_error(error_code(e, system_category())));
  CHECK_FALSE(AcceptBackoff::is_resource_error(error_code(ECONNABORTED, system_category())));
  CHECK_FALSE(AcceptBackoff::is_resource_error(error_code()));
}

TEST_CASE("the delay doubles from 50 ms to 1 s and a success ends the burst") {
  AcceptBackoff backoff;
  CHECK(backoff.on_success() == 0);
  const long expected[] = {50, 100, 200, 400, 800, 1000, 1000};
  for (long ms : expected) CHECK(backoff.on_failure().count() == ms);
  CHECK(backoff.failures() == 7);
  CHECK(backoff.on_success() == 7);
  CHECK(backoff.failures() == 0);
  CHECK(backoff.on_failure() == AcceptBackoff::kFirstDelay);
}
