/* simd/linear_s4_mve.h -- the int4 dot products of tinylm_linear_s4 with Armv8.1-M Helium (MVE,
 * Cortex-M55/M85); linear_s4.c includes it when __ARM_FEATURE_MVE is defined.
 *
 * One 16-byte block of Q4_0's layout is exactly one vector register: byte j holds column j in its
 * low nibble and column j + 16 in its high nibble. As int8 lanes, VSHL #4 then VSHR #4 (arithmetic)
 * sign-extends the low nibbles (columns 0..15), and VSHR #4 alone the high ones (columns 16..31):
 * two's complement nibbles become int8 in [-7, 7] with no table and no correction term. VMLADAVA
 * then multiplies 16 lanes by the matching activations and adds the products to an int32, exactly
 * (the sums are the portable ones: integer addition in any order). The two activation vectors of a
 * block are loaded once for four rows.
 */
#include <arm_mve.h>

/* out[r] = tl_dot_s4(a, w + r * ldw, n) for the 4 packed rows r = 0..3, n a multiple of 32 */
static inline void tl_dot_s4_mve_1x4(const int8_t *a, const uint8_t *w, size_t ldw, size_t n,
                                     int32_t out[4])
{
    const int8_t *w0 = (const int8_t *)w, *w2 = (const int8_t *)(w + 2 * ldw);  /* rows 1, 3: + ldw */
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k;
    for (k = 0; k < n / 2; k += 16, a += 32) {            /* one block of 32 columns, 16 bytes */
        int8x16_t a_lo = vld1q_s8(a), a_hi = vld1q_s8(a + 16);
        int8x16_t v0 = vld1q_s8(w0 + k), v1 = vld1q_s8(w0 + ldw + k);
        int8x16_t v2 = vld1q_s8(w2 + k), v3 = vld1q_s8(w2 + ldw + k);
        s0 = vmladavaq_s8(s0, a_lo, vshrq_n_s8(vshlq_n_s8(v0, 4), 4));
        s0 = vmladavaq_s8(s0, a_hi, vshrq_n_s8(v0, 4));
        s1 = vmladavaq_s8(s1, a_lo, vshrq_n_s8(vshlq_n_s8(v1, 4), 4));
        s1 = vmladavaq_s8(s1, a_hi, vshrq_n_s8(v1, 4));
        s2 = vmladavaq_s8(s2, a_lo, vshrq_n_s8(vshlq_n_s8(v2, 4), 4));
        s2 = vmladavaq_s8(s2, a_hi, vshrq_n_s8(v2, 4));
        s3 = vmladavaq_s8(s3, a_lo, vshrq_n_s8(vshlq_n_s8(v3, 4), 4));
        s3 = vmladavaq_s8(s3, a_hi, vshrq_n_s8(v3, 4));
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}
