// parse_emulated_device: the ACB_EMULATED_DEVICE syntax "name[:capacity]".
#include <stdexcept>
#include <string>

#include "acb_catch.hpp"
#include "alloc/driver.h"

using acb::alloc::parse_emulated_device;

TEST_CASE("parse_emulated_device reads a name and a capacity", "[driver][emulated]") {
  auto options = parse_emulated_device("acbtest:512MiB");
  CHECK(options.name == "acbtest");
  CHECK(options.capacity_bytes == (std::size_t{512} << 20));
  CHECK(parse_emulated_device("a:2GiB").capacity_bytes == (std::size_t{2} << 30));
  CHECK(parse_emulated_device("a:1048576").capacity_bytes == 1048576);
  CHECK(parse_emulated_device("a:64K").capacity_bytes == 65536);
  CHECK(parse_emulated_device("a:1T").capacity_bytes == (std::size_t{1} << 40));
}

TEST_CASE("parse_emulated_device keeps the default capacity without one", "[driver][emulated]") {
  const acb::alloc::EmulatedDeviceOptions defaults;
  auto options = parse_emulated_device("dev-1.x_y");
  CHECK(options.name == "dev-1.x_y");
  CHECK(options.capacity_bytes == defaults.capacity_bytes);
}

TEST_CASE("parse_emulated_device rejects bad text and names it", "[driver][emulated]") {
  for (const std::string bad : {"", ":1GiB", "a:", "a:GiB", "a:12XB", "a:0", "a/b:1GiB",
                                "a:99999999999999999999", "a:17179869184TiB"}) {
    INFO("spec: " << bad);
    try {
      parse_emulated_device(bad);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("\"" + bad + "\"") != std::string::npos);
    }
  }
}
