/* simd/dot_s8_mve.h -- tl_dot_s8_1x8 with Armv8.1-M Helium (MVE, Cortex-M55/M85); dot_s8.h
 * includes it when __ARM_FEATURE_MVE is defined.
 *
 * A vector register holds 16 int8, and VMLADAVA multiplies two of them lane by lane and adds all 16
 * products to a 32-bit scalar, exactly, in one instruction. One load of a's 16 bytes serves four
 * rows of b.
 */
#include <arm_mve.h>

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 4 rows j = 0..3 of b, over k < n rounded down to a
 * multiple of 16, which is returned (the caller adds the tail) */
static inline size_t tl_dot_s8_mve_1x4(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                       int32_t out[4])
{
    const int8_t *b01 = b, *b23 = b + 2 * ldb;        /* rows 0 and 2; rows 1 and 3 are + ldb */
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k;
    for (k = 0; k + 16 <= n; k += 16) {
        int8x16_t va = vld1q_s8(a + k);
        s0 = vmladavaq_s8(s0, va, vld1q_s8(b01 + k));
        s1 = vmladavaq_s8(s1, va, vld1q_s8(b01 + ldb + k));
        s2 = vmladavaq_s8(s2, va, vld1q_s8(b23 + k));
        s3 = vmladavaq_s8(s3, va, vld1q_s8(b23 + ldb + k));
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
    return k;
}

/* tl_dot_s8_1x8: rows 0..3, then rows 4..7, then the last n % 16 columns by tl_dot_s8 */
static inline void tl_dot_s8_mve_1x8(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                     int32_t out[8])
{
    size_t j, k = tl_dot_s8_mve_1x4(a, b, ldb, n, out);
    tl_dot_s8_mve_1x4(a, b + 4 * ldb, ldb, n, out + 4);
    if (k < n)
        for (j = 0; j < 8; j++)
            out[j] += tl_dot_s8(a + k, b + j * ldb + k, n - k);
}
