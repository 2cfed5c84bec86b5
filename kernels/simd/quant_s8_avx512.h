/* simd/quant_s8_avx512.h -- tinylm_quantize_s8 with AVX-512F: each group 16 lanes at a time, the
 * same operations as the portable group (|x| as a bit mask, fp32 division, round half to even,
 * clamp); the group's last n % 16 values go through lane masks, so there is no scalar tail.
 */
#include <immintrin.h>

static void tl_quant_s8_avx512_group(const float *restrict xg, int8_t *restrict qg, float *restrict scale,
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
    s = tl_quant_s8_scale(_mm512_reduce_max_ps(vmax), nan != 0);
    *scale = s;
    if (!tl_quant_s8_usable(s)) {                 /* 0, NaN or inf: the whole group is q = 0 */
        for (k = 0; k < n; k++)
            qg[k] = 0;
        return;
    }
    vs = _mm512_set1_ps(s);
    for (k = 0; k < n; k += 16) {
        __mmask16 m = k < n16 ? (__mmask16)0xffffu : tail;
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, xg + k), vs);
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm512_mask_cvtsepi32_storeu_epi8(qg + k, m, _mm512_cvtps_epi32(v));   /* exact: v is an integer */
    }
}

static void tl_quantize_s8_avx512(const float *restrict x, int8_t *restrict q, float *restrict scale,
                                  size_t M, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, g;
    for (m = 0; m < M; m++)
        for (g = 0; g < G; g++)
            tl_quant_s8_avx512_group(x + m * K + g * group_size, q + m * K + g * group_size,
                                     scale + m * G + g, group_size);
}
