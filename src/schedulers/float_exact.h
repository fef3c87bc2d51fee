// Included first by every scheduler source. diffusers rounds each tensor operation to float32
// separately; a compiler that fuses a*b+c into one FMA (GCC does by default for C++ with
// -march=native) would round differently from the reference. Turning contraction off keeps
// the schedulers' float32 expressions rounding exactly like the Python ones.
#pragma once

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
