/* simd/dot_s8_avx2.h -- tl_dot_s8_1x8 with AVX2 (dot_s8.h includes it when __AVX2__ is defined).
 *
 * _mm256_maddubs_epi16 multiplies unsigned by signed bytes, so it is fed |a| and b * sign(a)
 * (_mm256_sign_epi8). Each pair sum of products is at most 2 * 127 * 127 = 32258, which fits int16
 * without saturating; _mm256_madd_epi16 with ones widens to int32. With AVX-512 VNNI (and VL),
 * VPDPBUSD does those three steps in one instruction: it multiplies 4 unsigned by 4 signed bytes
 * and adds the 4 products to an int32 lane. The same exact sums either way.
 */
#include <immintrin.h>

/* acc + the products of u (unsigned bytes, here |a|) and s (signed bytes), 4 adjacent products summed
 * into each int32 lane */
static inline __m256i tl_dot_s8_avx2_madd(__m256i acc, __m256i u, __m256i s)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* 8 int32 lanes -> one vector with lane j = horizontal sum of acc[j]. */
static inline __m256i tl_dot_s8_avx2_hsum8(const __m256i acc[8])
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

/* tl_dot_s8_1x8: 32 columns per step, |a| * sign(b, a) summed into int32 lanes; the last n % 32
 * columns by tl_dot_s8 */
static inline void tl_dot_s8_avx2_1x8(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
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
            __m256i vb = _mm256_loadu_si256((const __m256i *)(b + j * ldb + k));
            acc[j] = tl_dot_s8_avx2_madd(acc[j], abs_a, _mm256_sign_epi8(vb, va));
        }
    }
    _mm256_storeu_si256((__m256i *)out, tl_dot_s8_avx2_hsum8(acc));
    if (k < n)
        for (j = 0; j < 8; j++)
            out[j] += tl_dot_s8(a + k, b + j * ldb + k, n - k);
}
