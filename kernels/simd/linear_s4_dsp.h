/* simd/linear_s4_dsp.h -- the int4 dot products of tinylm_linear_s4 with the Armv7E-M DSP extension
 * (Cortex-M4, M7, M33; not on Helium cores, where dot_s8.h does not include the DSP helpers this file
 * uses: simd/dot_s8_dsp.h). linear_s4.c's loop over outputs calls tl_dot_s4_dsp_1x4.
 *
 * One word of packed weights is 8 values of a Q4_0 block: bytes j..j+3 hold columns j..j+3 (low
 * nibbles) and j+16..j+19 (high nibbles). Masking keeps one nibble per byte in the byte's TOP four
 * bits: (w & 0x0F0F0F0F) << 4 and w & 0xF0F0F0F0. Read as int8, such a byte is 16 * q (two's
 * complement), so SXTB16 (and SXTB16 ROR 8) give pairs of 16 * q in 16-bit halves, and SMLAD adds
 * their products with the matching activations (a's words at j and j + 16, split the same way, once
 * for four rows). The sum is 16 * dot, exactly (|16 * dot| <= 16 * 7 * 127 * 133144 < 2^31, the
 * boundary's limit on group_size), and dot = sum / 16 is an exact division.
 */

/* s + 16 * (the dot product of the 8 weights in the packed word at p with the activations a[0..3]
 * (low nibbles) and a[16..19] (high nibbles), given as even / odd halves) */
static inline int32_t tl_s4_dsp_smlad8(int16x2_t lo_even, int16x2_t lo_odd, int16x2_t hi_even,
                                       int16x2_t hi_odd, const uint8_t *p, int32_t s)
{
    uint32_t v, q_lo, q_hi;                                   /* 16 * q in the top of each byte */
    __builtin_memcpy(&v, p, 4);
    q_lo = (v & 0x0F0F0F0Fu) << 4;
    q_hi = v & 0xF0F0F0F0u;
    s = __smlad(lo_even, __sxtb16((int8x4_t)q_lo), s);
    s = __smlad(lo_odd, tl_dot_s8_dsp_sxtb16_ror8(q_lo), s);
    s = __smlad(hi_even, __sxtb16((int8x4_t)q_hi), s);
    return __smlad(hi_odd, tl_dot_s8_dsp_sxtb16_ror8(q_hi), s);
}

/* out[r] = tl_dot_s4(a, w + r * ldw, n) for the 2 packed rows r = 0, 1, n a multiple of 32. Two
 * rows, not four: a's four halves, two sums, two row pointers and the weight word fit the 13 usable
 * registers; with four rows GCC 12 spills to the stack in the inner loop (measured: more executed
 * instructions than two passes of two rows). */
static inline void tl_dot_s4_dsp_1x2(const int8_t *a, const uint8_t *w, size_t ldw, size_t n,
                                     int32_t out[2])
{
    const uint8_t *w0 = w, *w1 = w + ldw, *w_end = w + n / 2;
    int32_t s0 = 0, s1 = 0;
    for (; w0 < w_end; a += 32) {                             /* one block of 32 columns */
        const int8_t *a_end = a + 16;
        const int8_t *p;
        for (p = a; p < a_end; p += 4, w0 += 4, w1 += 4) {    /* 8 of its columns a word */
            uint32_t lo = tl_dot_s8_dsp_load4(p), hi = tl_dot_s8_dsp_load4(p + 16);
            int16x2_t lo_even = __sxtb16((int8x4_t)lo), lo_odd = tl_dot_s8_dsp_sxtb16_ror8(lo);
            int16x2_t hi_even = __sxtb16((int8x4_t)hi), hi_odd = tl_dot_s8_dsp_sxtb16_ror8(hi);
            s0 = tl_s4_dsp_smlad8(lo_even, lo_odd, hi_even, hi_odd, w0, s0);
            s1 = tl_s4_dsp_smlad8(lo_even, lo_odd, hi_even, hi_odd, w1, s1);
        }
    }
    out[0] = s0 / 16;                                         /* exact: each sum is 16 * dot */
    out[1] = s1 / 16;
}

/* the same for 4 packed rows: rows 0, 1 then rows 2, 3 */
static inline void tl_dot_s4_dsp_1x4(const int8_t *a, const uint8_t *w, size_t ldw, size_t n,
                                     int32_t out[4])
{
    tl_dot_s4_dsp_1x2(a, w, ldw, n, out);
    tl_dot_s4_dsp_1x2(a, w + 2 * ldw, ldw, n, out + 2);
}
