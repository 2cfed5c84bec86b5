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
            for (g = 0; g < G; g++) {
                __m256i dot = tl_dot_s4_avx2_1x8(x_q + m * K + g * group_size,
                                                 w_q4 + n0 * (K / 2) + g * (group_size / 2), K / 2, group_size);
                __m256 sw = _mm256_i32gather_ps(w_scale + n0 * G + g, rows, 4);
                __m256 scale = _mm256_mul_ps(_mm256_set1_ps(x_scale[m * G + g]), sw);
                acc = _mm256_add_ps(acc, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(dot)));
            }
            if (b)
                acc = _mm256_add_ps(acc, _mm256_loadu_ps(b + n0));
            _mm256_storeu_ps(y + m * N + n0, acc);
        }
    for (; n0 < N; n0++)                          /* the last N % 8 columns, one at a time */
        tl_linear_s4_column(x_q, x_scale, w_q4, w_scale, b, y, M, N, K, group_size, n0);
}
