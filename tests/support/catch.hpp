// Includes Catch2 v2 (single header, Debian 12) or v3, whichever was found.
#pragma once
#if defined(BATCHQ_CATCH_V3)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
