/* dot_s8.h -- the int8 dot-product inner loops, shared by matmul_s8.c and linear_s8.c.
 *
 * Values are int8 in [-127, 127] (never -128); sums are exact int32 (n <= 133144), so every
 * variant gives the same int32 whatever order it adds the products in.
 *
 * The portable loops come first. tl_dot_s8_1x8, the one the kernels call, picks its instruction
 * set with one #if: simd/dot_s8_avx2.h (x86), simd/dot_s8_mve.h (Armv8.1-M Helium),
 * simd/dot_s8_dsp.h (Armv7E-M DSP), simd/dot_s8_neon.h (AArch64 NEON, SDOT where the build has the
 * dot-product extension), or the portable tl_dot_s8_1x4 twice. The AVX-512 VNNI blocks
 * (simd/dot_s8_avx512.h, simd/gemm_s8_avx512.h) are whole variants of the two int8 kernels and are
 * included by their .c files when TL_S8_AVX512 (below) is 1.
 */
#ifndef TINYLM_DOT_S8_H
#define TINYLM_DOT_S8_H

#include <stddef.h>
#include <stdint.h>

/* AVX-512 with the VNNI int8 dot product (Intel Cascade Lake, Ice Lake and later; AMD Zen 4 and
 * later): the int8 kernels' AVX-512 variants. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define TL_S8_AVX512 1
#else
#define TL_S8_AVX512 0
#endif

/* AMX-TILE + AMX-INT8 (Intel Sapphire Rapids and later), on top of the AVX-512 VNNI variants: the
 * int8 kernels' _amx entry points (simd/gemm_s8_amx.h); without it those are the functions above. */
#if TL_S8_AVX512 && defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__x86_64__)
#define TL_S8_AMX 1
#else
#define TL_S8_AMX 0
#endif

/* sum_k a[k] * b[k], exact int32: the reference for everything below, and every variant's tail. */
static inline int32_t tl_dot_s8(const int8_t *a, const int8_t *b, size_t n)
{
    int32_t sum = 0;
    size_t k;
    for (k = 0; k < n; k++)
        sum += (int32_t)a[k] * (int32_t)b[k];
    return sum;
}

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 4 rows j = 0..3 of b, in plain C: each a[k] is loaded
 * once for four rows, and four running sums stay in registers. On a core with no DSP or SIMD (Cortex-M3,
 * or any build without them) that is ~3 instructions per multiply-accumulate instead of ~5 for four
 * separate tl_dot_s8 passes. Same int32 sums (integer addition is exact in any order). */
static inline void tl_dot_s8_1x4(const int8_t *a, const int8_t *b, size_t ldb, size_t n, int32_t out[4])
{
    const int8_t *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k;
    for (k = 0; k < n; k++) {
        int32_t ak = a[k];
        s0 += ak * b0[k];
        s1 += ak * b1[k];
        s2 += ak * b2[k];
        s3 += ak * b3[k];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

#if defined(__AVX2__)
#include "simd/dot_s8_avx2.h"
#elif defined(__ARM_FEATURE_MVE)
#include "simd/dot_s8_mve.h"
#elif defined(__ARM_FEATURE_DSP)
#include "simd/dot_s8_dsp.h"
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include "simd/dot_s8_neon.h"
#endif

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 8 rows j = 0..7 of b: one row of x against eight
 * rows of w, so each load of a is used eight times. */
static inline void tl_dot_s8_1x8(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                 int32_t out[8])
{
#if defined(__AVX2__)
    tl_dot_s8_avx2_1x8(a, b, ldb, n, out);
#elif defined(__ARM_FEATURE_MVE)
    tl_dot_s8_mve_1x8(a, b, ldb, n, out);
#elif defined(__ARM_FEATURE_DSP)
    tl_dot_s8_dsp_1x8(a, b, ldb, n, out);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    tl_dot_s8_neon_1x8(a, b, ldb, n, out);
#else
    tl_dot_s8_1x4(a, b, ldb, n, out);                     /* rows 0..3, then rows 4..7 */
    tl_dot_s8_1x4(a, b + 4 * ldb, ldb, n, out + 4);
#endif
}

#endif /* TINYLM_DOT_S8_H */
