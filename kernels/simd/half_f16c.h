/* simd/half_f16c.h -- the array conversions of half.c with F16C (VCVTPS2PH / VCVTPH2PS), 8 values
 * at a time; the last n % 8 go through half.h's scalar conversions. VCVTPS2PH with round-to-nearest-
 * even gives the same bits as the portable code, NaN included (the hardware also quiets NaNs and
 * keeps the top payload bits).
 */
#include <immintrin.h>

static void tl_f32_to_f16_f16c(const float *restrict x, uint16_t *restrict h, size_t n)
{
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++)
        h[i] = tl_f32_to_f16(x[i]);
}

static void tl_f16_to_f32_f16c(const uint16_t *restrict h, float *restrict x, size_t n)
{
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        __m128i v = _mm_loadu_si128((const __m128i *)(h + i));
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(v));
    }
    for (; i < n; i++)
        x[i] = tl_f16_to_f32(h[i]);
}
