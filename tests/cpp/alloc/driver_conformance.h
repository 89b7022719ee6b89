// The driver conformance suite: the same scenarios against any Driver, each
// in its own Catch2 SECTION. Only copies touch device memory (a GPU's memory
// is not host accessible), so the scenarios hold for CUDA and the emulated
// device alike. Each scenario leaves nothing reserved, created or mapped.
#pragma once

#include "alloc/driver.h"

namespace acb::alloc::testing {

/// Runs every scenario. `exact_memory_info`: free memory moves by exactly what
/// was created (a device nobody else uses); otherwise only its direction is checked.
void run_conformance(Driver& driver, bool exact_memory_info);

}  // namespace acb::alloc::testing
