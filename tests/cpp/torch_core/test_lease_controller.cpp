// LeaseController tests follow (kept empty until they land).
#include "acb_catch.hpp"
