/* simd/linear_s4_avx2.h -- tinylm_linear_s4 with AVX2, after the activations are quantized.
 *
 * 16 packed bytes are 32 weights: the low nibbles (byte & 0xF) and the high nibbles (byte >> 4 &
 * 0xF) are sign-extended with (v ^ 8) - 8 and interleaved back into column order (low of byte j is
 * column 2j, high is 2j+1). Then the int8 dot of simd/dot_s8_avx2.h: |a| times b * sign(a), each
 * pair sum at most 2 * 127 * 7, no saturation. Integer sums are exact, so dot_g is the portable
 * one; the groups are added in the contract's order, lane by lane.
 */
#include <immintrin.h>

/* 32 int8 weights, in column order, from 16 packed bytes at p */
static inline __m256i tl_s4_avx2_unpack32(const uint8_t *p)
{
    const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i lo = _mm_and_si128(v, mask);                            /* columns 0, 2, 4, ... */
    __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);         /* columns 1, 3, 5, ... */
    lo = _mm_sub_epi8(_mm_xor_si128(lo, eight), eight);             /* 0..15 -> -8..7 */
    hi = _mm_sub_epi8(_mm_xor_si128(hi, eight), eight);
    return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
}

/* out[j] = tl_dot_s4(a, w + j * ldw, n) for the 8 packed rows j = 0..7: 32 columns per step, the
 * last n % 32 columns by tl_dot_s4 */
static inline void tl_dot_s4_avx2_1x8(const int8_t *a, const uint8_t *w, size_t ldw, size_t n,
                                      int32_t out[8])
{
    __m256i acc[8];
    size_t j, k;
    for (j = 0; j < 8; j++)
        acc[j] = _mm256_setzero_si256();
    for (k = 0; k + 32 <= n; k += 32) {
        __m256i va = _mm256_loadu_si256((const __m256i *)(a + k));
        __m256i abs_a = _mm256_sign_epi8(va, va);
        for (j = 0; j < 8; j++) {
            __m256i vb = tl_s4_avx2_unpack32(w + j * ldw + k / 2);
            acc[j] = tl_dot_s8_avx2_madd(acc[j], abs_a, _mm256_sign_epi8(vb, va));
        }
    }
    _mm256_storeu_si256((__m256i *)out, tl_dot_s8_avx2_hsum8(acc));
    if (k < n)
        for (j = 0; j < 8; j++)
            out[j] += tl_dot_s4(a + k, w + j * ldw + k / 2, n - k);
}

/* 8 output columns at a time, the 8 lanes of a vector as the 8 columns: each lane adds its groups
 * in order, (x_scale * w_scale) * dot then +, exactly as the portable loop does */
static void tl_linear_s4_avx2(const int8_t *restrict x_q, const float *restrict x_scale,
                              const uint8_t *restrict w_q4, const float *restrict w_scale,
                              const float *restrict b, float *restrict y,
                              size_t M, size_t N, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, n0, g, j;
    for (n0 = 0; n0 + 8 <= N; n0 += 8)
        for (m = 0; m < M; m++) {
            __m256 acc = _mm256_setzero_ps();
            for (g = 0; g < G; g++) {
                int32_t dot[8];
                float sw[8];
                __m256 scale;
                tl_dot_s4_avx2_1x8(x_q + m * K + g * group_size, w_q4 + n0 * (K / 2) + g * (group_size / 2),
                                   K / 2, group_size, dot);
                for (j = 0; j < 8; j++)
                    sw[j] = w_scale[(n0 + j) * G + g];
                scale = _mm256_mul_ps(_mm256_set1_ps(x_scale[m * G + g]), _mm256_loadu_ps(sw));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(scale,
                                    _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)dot))));
            }
            if (b)
                acc = _mm256_add_ps(acc, _mm256_loadu_ps(b + n0));
            _mm256_storeu_ps(y + m * N + n0, acc);
        }
    for (; n0 < N; n0++)                          /* the last N % 8 columns, one at a time */
        tl_linear_s4_column(x_q, x_scale, w_q4, w_scale, b, y, M, N, K, group_size, n0);
}
