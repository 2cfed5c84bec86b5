/* simd/linear_s4_avx2.h -- tinylm_linear_s4 with AVX2 (and AVX-512 VNNI's VPDPBUSD where the build
 * has it), after the activations are quantized.
 *
 * Q4_0's layout makes the unpacking cheap: the 16 bytes of a block hold columns 0..15 in their low
 * nibbles and 16..31 in their high nibbles, so (bytes, bytes >> 4) & 0xF is the block's 32 columns
 * in order, one 128-bit half each. XOR with 0x88 first turns each two's complement nibble q into the
 * unsigned u = q + 8 (0..15), which is what the unsigned-by-signed multiply (simd/dot_s8_avx2.h's
 * tl_dot_s8_avx2_madd) wants: sum u * a = sum q * a + 8 * sum a, so 8 * sum a (the same for every
 * row of w) is subtracted once per group. Pair sums are at most 2 * 15 * 127: no saturation; the
 * int32 sums are exact, so dot_g is the portable one, and the groups are added in the contract's
 * order, lane by lane.
 */
#include <immintrin.h>

/* lane j = tl_dot_s4(a, w + j * ldw, n) for the 8 packed rows j = 0..7, n a multiple of 32 */
static inline __m256i tl_dot_s4_avx2_1x8(const int8_t *a, const uint8_t *w, size_t ldw, size_t n)
{
    const __m256i mask = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    const __m128i flip = _mm_set1_epi8((char)0x88);
    __m256i acc[8], corr = _mm256_setzero_si256();                  /* corr: 8 * sum a, in lanes */
    size_t j, k;
    for (j = 0; j < 8; j++)
        acc[j] = _mm256_setzero_si256();
    for (k = 0; k < n; k += 32) {
        __m256i va = _mm256_loadu_si256((const __m256i *)(a + k));
        corr = tl_dot_s8_avx2_madd(corr, eight, va);
        for (j = 0; j < 8; j++) {
            __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(w + j * ldw + k / 2)), flip);
            __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), mask);  /* q + 8 */
            acc[j] = tl_dot_s8_avx2_madd(acc[j], u, va);
        }
    }
    for (j = 0; j < 8; j++)
        acc[j] = _mm256_sub_epi32(acc[j], corr);
    return tl_dot_s8_avx2_hsum8(acc);
}

/* Two blocks (64 columns) of 8 packed rows per step, one 32-byte load per row: the low nibbles are
 * columns 0..15 | 32..47 and the high nibbles 16..31 | 48..63, so a's halves are regrouped the same
 * way once (shared by the 8 rows) and no nibble has to move. The 128-bit halves of every sum stay
 * apart: the low half belongs to the first block, the high half to the second. Returns, per row j
 * (lane j), the dot of the even blocks in *even and of the odd blocks in *odd (n a multiple of 64). */
static inline void tl_dot_s4_avx2_1x8_pairs(const int8_t *a, const uint8_t *w, size_t ldw, size_t n,
                                            __m256i *even, __m256i *odd)
{
    const __m256i mask = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    const __m256i flip = _mm256_set1_epi8((char)0x88);
    __m256i acc[8], corr = _mm256_setzero_si256();
    size_t j, k;
    for (j = 0; j < 8; j++)
        acc[j] = _mm256_setzero_si256();
    for (k = 0; k < n; k += 64) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(a + k));         /* columns 0..31 */
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(a + k + 32));    /* columns 32..63 */
        __m256i a_lo = _mm256_permute2x128_si256(a0, a1, 0x20);            /* 0..15 | 32..47 */
        __m256i a_hi = _mm256_permute2x128_si256(a0, a1, 0x31);            /* 16..31 | 48..63 */
        corr = tl_dot_s8_avx2_madd(tl_dot_s8_avx2_madd(corr, eight, a_lo), eight, a_hi);
        for (j = 0; j < 8; j++) {
            __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + j * ldw + k / 2)), flip);
            __m256i u_lo = _mm256_and_si256(v, mask);                        /* q + 8 */
            __m256i u_hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
            acc[j] = tl_dot_s8_avx2_madd(tl_dot_s8_avx2_madd(acc[j], u_lo, a_lo), u_hi, a_hi);
        }
    }
    {
        __m256i t0, t1, t2, t3, u0, u1;
        for (j = 0; j < 8; j++)
            acc[j] = _mm256_sub_epi32(acc[j], corr);
        t0 = _mm256_hadd_epi32(acc[0], acc[1]);
        t1 = _mm256_hadd_epi32(acc[2], acc[3]);
        t2 = _mm256_hadd_epi32(acc[4], acc[5]);
        t3 = _mm256_hadd_epi32(acc[6], acc[7]);
        u0 = _mm256_hadd_epi32(t0, t1);        /* per 128-bit half: that block's sums of rows 0..3 */
        u1 = _mm256_hadd_epi32(t2, t3);        /* per 128-bit half: that block's sums of rows 4..7 */
        *even = _mm256_permute2x128_si256(u0, u1, 0x20);
        *odd = _mm256_permute2x128_si256(u0, u1, 0x31);
    }
}

/* acc + (x_scale[m, g] * w_scale[n0 + lane, g]) * dot, lane by lane (the contract's step) */
static inline __m256 tl_s4_avx2_step(__m256 acc, __m256i dot, float sx, const float *w_scale_g, __m256i rows)
{
    __m256 scale = _mm256_mul_ps(_mm256_set1_ps(sx), _mm256_i32gather_ps(w_scale_g, rows, 4));
    return _mm256_add_ps(acc, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(dot)));
}

/* 8 output columns at a time, the 8 lanes of a vector as the 8 columns: each lane adds its groups
 * in order, (x_scale * w_scale) * dot then +, exactly as the portable loop does */
static void tl_linear_s4_avx2(const int8_t *restrict x_q, const float *restrict x_scale,
                              const uint8_t *restrict w_q4, const float *restrict w_scale,
                              const float *restrict b, float *restrict y,
                              size_t M, size_t N, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, n0, g;
    /* lane j reads w_scale[(n0 + j) * G + g]: a gather with these offsets (G < 2^31 / 8 here: K is
     * under 2^31 bytes for any weight a caller can hold) */
    const __m256i rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)G));
    for (n0 = 0; n0 + 8 <= N; n0 += 8)
        for (m = 0; m < M; m++) {
            __m256 acc = _mm256_setzero_ps();
            const int8_t *xm = x_q + m * K;
            const uint8_t *wn = w_q4 + n0 * (K / 2);
            for (g = 0; g < G;) {
                __m256i even, odd;
                if (group_size == 32 && g + 2 <= G) {                /* two groups in one pass */
                    tl_dot_s4_avx2_1x8_pairs(xm + g * 32, wn + g * 16, K / 2, 64, &even, &odd);
                    acc = tl_s4_avx2_step(acc, even, x_scale[m * G + g], w_scale + n0 * G + g, rows);
                    acc = tl_s4_avx2_step(acc, odd, x_scale[m * G + g + 1], w_scale + n0 * G + g + 1, rows);
                    g += 2;
                } else if (group_size % 64 == 0) {                   /* a group is whole pairs */
                    tl_dot_s4_avx2_1x8_pairs(xm + g * group_size, wn + g * (group_size / 2), K / 2,
                                             group_size, &even, &odd);
                    acc = tl_s4_avx2_step(acc, _mm256_add_epi32(even, odd), x_scale[m * G + g],
                                          w_scale + n0 * G + g, rows);
                    g += 1;
                } else {                                             /* one block at a time */
                    __m256i dot = tl_dot_s4_avx2_1x8(xm + g * group_size, wn + g * (group_size / 2), K / 2,
                                                     group_size);
                    acc = tl_s4_avx2_step(acc, dot, x_scale[m * G + g], w_scale + n0 * G + g, rows);
                    g += 1;
                }
            }
            if (b)
                acc = _mm256_add_ps(acc, _mm256_loadu_ps(b + n0));
            _mm256_storeu_ps(y + m * N + n0, acc);
        }
    for (; n0 < N; n0++)                          /* the last N % 8 columns, one at a time */
        tl_linear_s4_column(x_q, x_scale, w_q4, w_scale, b, y, M, N, K, group_size, n0);
}
