// Includes Catch2 whichever major version is installed (v2 on Debian 12, v3 on Debian 13).
#pragma once
#if ACB_CATCH2_V3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
