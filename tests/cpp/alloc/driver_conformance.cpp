// The driver conformance scenarios (see driver_conformance.h).
#include "driver_conformance.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "acb_catch.hpp"
#include "driver_test_support.h"

namespace acb::alloc::testing {

namespace {

/// Pinned host memory as RAII, for the scenarios.
class HostBuffer {
 public:
  HostBuffer(Driver& driver, std::size_t bytes)
      : driver_(driver), bytes_(bytes), ptr_(driver.host_alloc(bytes, 0)) {}
  ~HostBuffer() { driver_.host_free(ptr_, bytes_); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  std::uint8_t* data() { return static_cast<std::uint8_t*>(ptr_); }

 private:
  Driver& driver_;
  std::size_t bytes_;
  void* ptr_;
};

void fill_pattern(std::uint8_t* data, std::size_t bytes, std::uint32_t seed) {
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < bytes; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    data[i] = static_cast<std::uint8_t>(x);
  }
}

void granularity_scenario(Driver& driver) {
  const std::size_t granule = driver.granularity(0);
  CHECK(granule >= 4096);
  CHECK((granule & (granule - 1)) == 0);
  CHECK(driver.device_count() >= 1);
  const DevicePtr base = driver.reserve(3 * granule, 0);
  CHECK(base != 0);
  CHECK(base % granule == 0);
  const DevicePtr other = driver.reserve(granule, 0);
  CHECK((other + granule <= base || other >= base + 3 * granule));  // disjoint
  driver.free_reservation(other, granule);
  driver.free_reservation(base, 3 * granule);
}

/// Offload and restore by hand: data written through copies survives being
/// copied to a host backup, unmapped, released, recreated and mapped again at
/// the same address.
void offload_restore_scenario(Driver& driver) {
  const std::size_t granule = driver.granularity(0);
  const std::size_t bytes = 2 * granule;
  const DevicePtr base = driver.reserve(4 * granule, 0);
  const DevicePtr address = base + granule;  // not the reservation's start, on purpose
  StreamHandle stream = driver.create_stream(0);
  HostBuffer original(driver, bytes), backup(driver, bytes), readback(driver, bytes);
  fill_pattern(original.data(), bytes, 7);

  PhysicalHandle first = driver.create(bytes, 0);
  driver.map(address, bytes, first, 0);
  driver.copy_to_device_async(address, original.data(), bytes, stream);
  driver.copy_to_host_async(backup.data(), address, bytes, stream);
  driver.synchronize_stream(stream);
  REQUIRE(std::memcmp(backup.data(), original.data(), bytes) == 0);

  driver.unmap(address, bytes);
  driver.release(first);
  PhysicalHandle second = driver.create(bytes, 0);
  driver.map(address, bytes, second, 0);
  driver.copy_to_device_async(address, backup.data(), bytes, stream);
  std::memset(readback.data(), 0, bytes);
  driver.copy_to_host_async(readback.data(), address, bytes, stream);
  driver.synchronize_stream(stream);
  CHECK(std::memcmp(readback.data(), original.data(), bytes) == 0);

  // Partial copies at an offset inside the mapping land where they should.
  const std::size_t offset = granule / 2 + 123;
  std::vector<std::uint8_t> small(1000, 0xAB);
  driver.copy_to_device_async(address + offset, small.data(), small.size(), stream);
  driver.copy_to_host_async(readback.data(), address, bytes, stream);
  driver.synchronize_device(0);
  CHECK(readback.data()[offset - 1] == original.data()[offset - 1]);
  CHECK(readback.data()[offset] == 0xAB);
  CHECK(readback.data()[offset + 999] == 0xAB);
  CHECK(readback.data()[offset + 1000] == original.data()[offset + 1000]);

  driver.unmap(address, bytes);
  driver.release(second);
  driver.destroy_stream(stream);
  driver.free_reservation(base, 4 * granule);
}

/// A physical allocation keeps its contents while unmapped, and one range
/// unmap can take several adjacent mappings.
void remap_same_handle_scenario(Driver& driver) {
  const std::size_t granule = driver.granularity(0);
  const DevicePtr base = driver.reserve(2 * granule, 0);
  PhysicalHandle a = driver.create(granule, 0);
  PhysicalHandle b = driver.create(granule, 0);
  driver.map(base, granule, a, 0);
  driver.map(base + granule, granule, b, 0);
  HostBuffer data(driver, 2 * granule), readback(driver, 2 * granule);
  fill_pattern(data.data(), 2 * granule, 11);
  driver.copy_to_device_async(base, data.data(), 2 * granule, nullptr);
  driver.synchronize_stream(nullptr);
  driver.unmap(base, 2 * granule);
  // Swap them: each handle's bytes move with it.
  driver.map(base, granule, b, 0);
  driver.map(base + granule, granule, a, 0);
  driver.copy_to_host_async(readback.data(), base, 2 * granule, nullptr);
  driver.synchronize_stream(nullptr);
  CHECK(std::memcmp(readback.data(), data.data() + granule, granule) == 0);
  CHECK(std::memcmp(readback.data() + granule, data.data(), granule) == 0);
  driver.unmap(base, granule);
  driver.unmap(base + granule, granule);
  driver.release(a);
  driver.release(b);
  driver.free_reservation(base, 2 * granule);
}

/// Creating more than the device holds fails with out_of_memory and the
/// message carries the size; freeing makes room again.
void out_of_memory_scenario(Driver& driver) {
  const std::size_t granule = driver.granularity(0);
  const MemoryInfo info = driver.memory_info(0);
  REQUIRE(info.total_bytes >= granule);
  const std::size_t too_much = (info.total_bytes / granule + 1) * granule;
  try {
    driver.create(too_much, 0);
    FAIL("create(" << too_much << ") beyond the device's " << info.total_bytes
                   << " bytes succeeded");
  } catch (const DriverError& e) {
    CHECK(e.out_of_memory());
    CHECK_THAT_TEXT(e.what(), std::to_string(too_much));
    CHECK_THAT_TEXT(e.what(), "device=0");
  }
  PhysicalHandle handle = driver.create(granule, 0);  // still usable afterwards
  driver.release(handle);
}

void memory_info_scenario(Driver& driver, bool exact) {
  const std::size_t granule = driver.granularity(0);
  const MemoryInfo before = driver.memory_info(0);
  CHECK(before.total_bytes > 0);
  CHECK(before.free_bytes <= before.total_bytes);
  PhysicalHandle handle = driver.create(4 * granule, 0);
  const MemoryInfo during = driver.memory_info(0);
  CHECK(during.total_bytes == before.total_bytes);
  if (exact)
    CHECK(during.free_bytes == before.free_bytes - 4 * granule);
  else
    CHECK(during.free_bytes < before.free_bytes);
  driver.release(handle);
  const MemoryInfo after = driver.memory_info(0);
  if (exact)
    CHECK(after.free_bytes == before.free_bytes);
  else
    CHECK(after.free_bytes > during.free_bytes);
}

void event_scenario(Driver& driver) {
  const std::size_t granule = driver.granularity(0);
  const DevicePtr base = driver.reserve(granule, 0);
  PhysicalHandle handle = driver.create(granule, 0);
  driver.map(base, granule, handle, 0);
  StreamHandle stream = driver.create_stream(0);
  EventHandle event = driver.create_event(0);
  CHECK(driver.event_done(event));  // never recorded: nothing to wait for
  HostBuffer data(driver, granule);
  fill_pattern(data.data(), granule, 3);
  driver.copy_to_device_async(base, data.data(), granule, stream);
  driver.record_event(event, stream);
  driver.synchronize_event(event);
  CHECK(driver.event_done(event));
  driver.destroy_event(event);
  driver.destroy_stream(stream);
  driver.unmap(base, granule);
  driver.release(handle);
  driver.free_reservation(base, granule);
}

/// Misuse is a DriverError, never a crash or silent corruption.
void misuse_scenario(Driver& driver) {
  const std::size_t granule = driver.granularity(0);
  const DevicePtr base = driver.reserve(2 * granule, 0);
  PhysicalHandle handle = driver.create(granule, 0);
  CHECK_THROWS_AS(driver.map(base + 4096, granule, handle, 0), DriverError);  // unaligned
  driver.map(base, granule, handle, 0);
  CHECK_THROWS_AS(driver.unmap(base + granule, granule), DriverError);  // nothing mapped there
  driver.unmap(base, granule);
  driver.release(handle);
  driver.free_reservation(base, 2 * granule);
}

}  // namespace

void run_conformance(Driver& driver, bool exact_memory_info) {
  SECTION("granularity and reservations") { granularity_scenario(driver); }
  SECTION("offload and restore at the same address") { offload_restore_scenario(driver); }
  SECTION("a handle keeps its data while unmapped") { remap_same_handle_scenario(driver); }
  SECTION("create beyond capacity fails with out_of_memory") { out_of_memory_scenario(driver); }
  SECTION("memory_info accounts created memory") {
    memory_info_scenario(driver, exact_memory_info);
  }
  SECTION("events complete after the work before them") { event_scenario(driver); }
  SECTION("misuse is a DriverError") { misuse_scenario(driver); }
}

}  // namespace acb::alloc::testing
