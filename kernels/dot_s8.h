/* dot_s8.h -- the int8 dot-product inner loops, shared by matmul_s8.c and linear_s8.c.
 *
 * Values are int8 in [-127, 127] (never -128); sums are exact int32 (n <= 133144).
 * One portable C version, plus blocks for instruction sets that have a faster way:
 *   __AVX2__: _mm256_maddubs_epi16 multiplies unsigned by signed bytes, so we feed it |a| and
 *             b * sign(a) (_mm256_sign_epi8). Each pair sum of products is at most 2 * 127 * 127 =
 *             32258, which fits int16 without saturating; _mm256_madd_epi16 with ones widens to int32.
 *   (Arm DSP / MVE blocks are added here by the microcontroller port.)
 */
#ifndef TINYLM_DOT_S8_H
#define TINYLM_DOT_S8_H

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* sum_k a[k] * b[k], exact int32: the reference for everything below. */
static inline int32_t tl_dot_s8(const int8_t *a, const int8_t *b, size_t n)
{
    int32_t sum = 0;
    size_t k;
    for (k = 0; k < n; k++)
        sum += (int32_t)a[k] * (int32_t)b[k];
    return sum;
}

#if defined(__AVX2__)
/* 8 int32 lanes -> one vector with lane j = horizontal sum of acc[j]. */
static inline __m256i tl_hsum8_epi32(const __m256i acc[8])
{
    __m256i t0 = _mm256_hadd_epi32(acc[0], acc[1]);
    __m256i t1 = _mm256_hadd_epi32(acc[2], acc[3]);
    __m256i t2 = _mm256_hadd_epi32(acc[4], acc[5]);
    __m256i t3 = _mm256_hadd_epi32(acc[6], acc[7]);
    __m256i u0 = _mm256_hadd_epi32(t0, t1);   /* per 128-bit half: partial sums of rows 0..3 */
    __m256i u1 = _mm256_hadd_epi32(t2, t3);   /* per 128-bit half: partial sums of rows 4..7 */
    __m256i lo = _mm256_permute2x128_si256(u0, u1, 0x20);
    __m256i hi = _mm256_permute2x128_si256(u0, u1, 0x31);
    return _mm256_add_epi32(lo, hi);
}
#endif

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 8 rows j = 0..7 of b: one row of x against eight
 * rows of w, so each load of a is used eight times. */
static inline void tl_dot_s8_1x8(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                 int32_t out[8])
{
    size_t j, k = 0;
#if defined(__AVX2__)
    {
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i acc[8];
        for (j = 0; j < 8; j++)
            acc[j] = _mm256_setzero_si256();
        for (; k + 32 <= n; k += 32) {
            __m256i va = _mm256_loadu_si256((const __m256i *)(a + k));
            __m256i abs_a = _mm256_sign_epi8(va, va);
            for (j = 0; j < 8; j++) {
                __m256i vb = _mm256_loadu_si256((const __m256i *)(b + j * ldb + k));
                __m256i prod16 = _mm256_maddubs_epi16(abs_a, _mm256_sign_epi8(vb, va));
                acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(prod16, ones));
            }
        }
        _mm256_storeu_si256((__m256i *)out, tl_hsum8_epi32(acc));
    }
#else
    for (j = 0; j < 8; j++)
        out[j] = 0;
#endif
    if (k < n)                                    /* the tail (or everything, portably) */
        for (j = 0; j < 8; j++)
            out[j] += tl_dot_s8(a + k, b + j * ldb + k, n - k);
}

#endif /* TINYLM_DOT_S8_H */
