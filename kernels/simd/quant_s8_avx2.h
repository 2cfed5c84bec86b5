/* simd/quant_s8_avx2.h -- tinylm_quantize_s8 with AVX2: max |x| and "any NaN?" 8 lanes at a time,
 * then the division, rounding and clamping 8 lanes at a time; the last n % 8 values of each pass
 * through quant_s8.c's portable steps. The same operations, so the same bits.
 */
#include <immintrin.h>

static void tl_quant_s8_avx2_group(const float *restrict xg, int8_t *restrict qg, float *restrict scale,
                                   size_t n)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    __m256 vmax = _mm256_setzero_ps(), vnan = _mm256_setzero_ps(), vs;
    float amax = 0.0f, lanes[8], s;
    int has_nan;
    size_t j, k;
    for (k = 0; k + 8 <= n; k += 8) {
        __m256 a = _mm256_and_ps(_mm256_loadu_ps(xg + k), abs_mask);
        vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        vmax = _mm256_max_ps(vmax, a);
    }
    has_nan = _mm256_movemask_ps(vnan) != 0;
    _mm256_storeu_ps(lanes, vmax);
    for (j = 0; j < 8; j++)
        if (lanes[j] > amax)
            amax = lanes[j];
    amax = tl_quant_s8_amax(xg + k, n - k, amax, &has_nan);
    s = tl_quant_s8_scale(amax, has_nan);
    *scale = s;
    if (!tl_quant_s8_usable(s)) {                 /* 0, NaN or inf: the whole group is q = 0 */
        for (k = 0; k < n; k++)
            qg[k] = 0;
        return;
    }
    vs = _mm256_set1_ps(s);
    for (k = 0; k + 8 <= n; k += 8) {
        __m256 v = _mm256_div_ps(_mm256_loadu_ps(xg + k), vs);
        __m256i i32;
        __m128i i16;
        v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        i32 = _mm256_cvtps_epi32(v);                                   /* exact: v is an integer */
        i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
        _mm_storel_epi64((__m128i *)(qg + k), _mm_packs_epi16(i16, i16));
    }
    for (; k < n; k++)
        qg[k] = tl_quant_s8_one(xg[k], s);
}

static void tl_quantize_s8_avx2(const float *restrict x, int8_t *restrict q, float *restrict scale,
                                size_t M, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, g;
    for (m = 0; m < M; m++)
        for (g = 0; g < G; g++)
            tl_quant_s8_avx2_group(x + m * K + g * group_size, q + m * K + g * group_size,
                                   scale + m * G + g, group_size);
}
