/* quant_s8.c -- symmetric int8 quantization per row and group, and back. Contract: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "half.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
/* quantize_group (below), 16 lanes at a time, the same operations (|x| as a bit mask, fp32
 * division, round half to even, clamp): the group's last n % 16 values go through lane masks, so
 * there is no scalar tail. Returns 0 and leaves q alone when the scale is not a positive finite
 * number (the caller zeroes the group). */
static int quantize_group_avx512(const float *restrict xg, int8_t *restrict qg, float *restrict scale,
                                 size_t n)
{
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    __m512 vmax = _mm512_setzero_ps(), vs;
    __mmask16 nan = 0, tail = (__mmask16)((1u << (n % 16)) - 1u);
    size_t k, n16 = n - n % 16;
    float s;
    for (k = 0; k < n16; k += 16) {
        __m512 a = _mm512_and_ps(_mm512_loadu_ps(xg + k), abs_mask);
        nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        vmax = _mm512_max_ps(vmax, a);
    }
    if (tail) {                                   /* masked-off lanes load as 0: max |x| unchanged */
        __m512 a = _mm512_and_ps(_mm512_maskz_loadu_ps(tail, xg + n16), abs_mask);
        nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        vmax = _mm512_max_ps(vmax, a);
    }
    s = nan ? tl_bits_f32(0x7fc00000u) : _mm512_reduce_max_ps(vmax) / 127.0f;
    *scale = s;
    if (!(s > 0.0f) || s > 3.40282347e38f)
        return 0;
    vs = _mm512_set1_ps(s);
    for (k = 0; k < n; k += 16) {
        __mmask16 m = k < n16 ? (__mmask16)0xffffu : tail;
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, xg + k), vs);
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm512_mask_cvtsepi32_storeu_epi8(qg + k, m, _mm512_cvtps_epi32(v));   /* exact: v is an integer */
    }
    return 1;
}
#endif

/* One group of n values: its scale, and q (all zero when the scale is not a positive finite number). */
static void quantize_group(const float *restrict xg, int8_t *restrict qg, float *restrict scale,
                           size_t n)
{
    float amax = 0.0f, s;
    int has_nan = 0;
    size_t k = 0;
#if defined(__AVX512F__)
    if (!quantize_group_avx512(xg, qg, scale, n))
        for (k = 0; k < n; k++)
            qg[k] = 0;
    return;
#endif
#if defined(__AVX2__)
    {                                             /* max |x| and "any NaN?", 8 lanes at a time */
        const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        __m256 vmax = _mm256_setzero_ps(), vnan = _mm256_setzero_ps();
        float lanes[8];
        size_t j;
        for (; k + 8 <= n; k += 8) {
            __m256 a = _mm256_and_ps(_mm256_loadu_ps(xg + k), abs_mask);
            vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
            vmax = _mm256_max_ps(vmax, a);
        }
        has_nan = _mm256_movemask_ps(vnan) != 0;
        _mm256_storeu_ps(lanes, vmax);
        for (j = 0; j < 8; j++)
            if (lanes[j] > amax)
                amax = lanes[j];
    }
#endif
    for (; k < n; k++) {
        float a = tl_bits_f32(tl_f32_bits(xg[k]) & 0x7fffffffu);   /* |x| */
        if (a != a)
            has_nan = 1;
        else if (a > amax)
            amax = a;
    }
    s = has_nan ? tl_bits_f32(0x7fc00000u) : amax / 127.0f;
    *scale = s;
    if (!(s > 0.0f) || s > 3.40282347e38f) {      /* 0, NaN or inf: the whole group is q = 0 */
        for (k = 0; k < n; k++)
            qg[k] = 0;
        return;
    }
    k = 0;
#if defined(__AVX2__)
    {
        const __m256 vs = _mm256_set1_ps(s);
        const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
        for (; k + 8 <= n; k += 8) {
            __m256 v = _mm256_div_ps(_mm256_loadu_ps(xg + k), vs);
            v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            {
                __m128i i32lo, i32hi;
                __m256i i32 = _mm256_cvtps_epi32(v);            /* exact: v is an integer */
                i32lo = _mm256_castsi256_si128(i32);
                i32hi = _mm256_extracti128_si256(i32, 1);
                __m128i i16 = _mm_packs_epi32(i32lo, i32hi);
                _mm_storel_epi64((__m128i *)(qg + k), _mm_packs_epi16(i16, i16));
            }
        }
    }
#endif
    for (; k < n; k++) {
        float r = tl_round_even(xg[k] / s);
        if (r > 127.0f)
            r = 127.0f;
        if (r < -127.0f)
            r = -127.0f;
        qg[k] = (int8_t)r;
    }
}

void tinylm_quantize_s8(const float *restrict x, int8_t *restrict q, float *restrict scale,
                        size_t M, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, g;
    for (m = 0; m < M; m++)
        for (g = 0; g < G; g++)
            quantize_group(x + m * K + g * group_size, q + m * K + g * group_size,
                           scale + m * G + g, group_size);
}

void tinylm_dequantize_s8(const int8_t *restrict q, const float *restrict scale, float *restrict y,
                          size_t M, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, k;
    for (m = 0; m < M; m++)
        for (k = 0; k < K; k++)
            y[m * K + k] = (float)q[m * K + k] * scale[m * G + k / group_size];
}
