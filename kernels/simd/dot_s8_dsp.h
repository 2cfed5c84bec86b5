/* simd/dot_s8_dsp.h -- tl_dot_s8_1x8 with the Armv7E-M DSP extension (Cortex-M4, M7, M33, M55);
 * dot_s8.h includes it when __ARM_FEATURE_DSP is defined (and MVE is not).
 *
 * SMLAD multiplies two pairs of 16-bit halves and adds both products to a 32-bit accumulator, in one
 * instruction. SXTB16 sign-extends bytes 0 and 2 of a word into its two 16-bit halves; with the
 * word rotated right by 8 first, bytes 1 and 3. So four int8 pairs cost one load, two SXTB16 and two
 * SMLAD per row of b, and a's word is split once for four rows. The products are added in another
 * order than tl_dot_s8's, but integer sums are exact: the int32 is the same (|a*b| <= 127*127 is
 * exact in the 16x16 multiply).
 */
#include <arm_acle.h>

/* four int8 at p, any alignment, as one word (Armv7-M loads unaligned words in hardware) */
static inline uint32_t tl_dot_s8_dsp_load4(const int8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* bytes 1 and 3 of v, sign-extended to two int16: SXTB16 with its built-in rotation. GCC 12 does
 * not fold __sxtb16(__ror(v, 8)) into one instruction, so we write it (one instruction saved per
 * word of a and of b). */
static inline int16x2_t tl_dot_s8_dsp_sxtb16_ror8(uint32_t v)
{
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* s + the dot product of four int8 pairs, a's word already split into even and odd bytes */
static inline int32_t tl_dot_s8_dsp_smlad4(int16x2_t a_even, int16x2_t a_odd, uint32_t vb, int32_t s)
{
    return __smlad(a_odd, tl_dot_s8_dsp_sxtb16_ror8(vb), __smlad(a_even, __sxtb16((int8x4_t)vb), s));
}

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 4 rows j = 0..3 of b, over k < n rounded down to a
 * multiple of 4, which is returned (the caller adds the tail). Four rows, not eight: 4 sums, a's
 * two halves, 2 row pointers and the stride fit the 13 usable registers without spilling. */
static inline size_t tl_dot_s8_dsp_1x4(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                       int32_t out[4])
{
    const int8_t *a_end = a + (n & ~(size_t)3);
    const int8_t *b01 = b, *b23 = b + 2 * ldb;        /* rows 0 and 2; rows 1 and 3 are + ldb */
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (; a < a_end; a += 4, b01 += 4, b23 += 4) {
        uint32_t va = tl_dot_s8_dsp_load4(a);
        int16x2_t a_even = __sxtb16((int8x4_t)va), a_odd = tl_dot_s8_dsp_sxtb16_ror8(va);
        s0 = tl_dot_s8_dsp_smlad4(a_even, a_odd, tl_dot_s8_dsp_load4(b01), s0);
        s1 = tl_dot_s8_dsp_smlad4(a_even, a_odd, tl_dot_s8_dsp_load4(b01 + ldb), s1);
        s2 = tl_dot_s8_dsp_smlad4(a_even, a_odd, tl_dot_s8_dsp_load4(b23), s2);
        s3 = tl_dot_s8_dsp_smlad4(a_even, a_odd, tl_dot_s8_dsp_load4(b23 + ldb), s3);
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
    return n & ~(size_t)3;
}

/* tl_dot_s8_1x8: rows 0..3, then rows 4..7, then the last n % 4 columns by tl_dot_s8 */
static inline void tl_dot_s8_dsp_1x8(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                     int32_t out[8])
{
    size_t j, k = tl_dot_s8_dsp_1x4(a, b, ldb, n, out);
    tl_dot_s8_dsp_1x4(a, b + 4 * ldb, ldb, n, out + 4);
    if (k < n)
        for (j = 0; j < 8; j++)
            out[j] += tl_dot_s8(a + k, b + j * ldb + k, n - k);
}
