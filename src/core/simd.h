// Includes the x86 intrinsics headers. GCC 12.2 at -O3 reports -Wmaybe-uninitialized inside its
// own AVX-512 headers (the _mm*_undefined_* placeholders, GCC PR 105593); the pragma silences it
// for those headers only, so the warning stays on for our code.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
