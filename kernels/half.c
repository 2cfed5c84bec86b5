/* half.c -- arrays of fp32 <-> fp16 (binary16). Contract: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "half.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

void tinylm_f32_to_f16(const float *restrict x, uint16_t *restrict h, size_t n)
{
    size_t i = 0;
#if defined(__F16C__)
    /* vcvtps2ph with round-to-nearest-even: same bits as the portable code, NaN included
     * (the hardware also quiets NaNs and keeps the top payload bits). */
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
#endif
    for (; i < n; i++)
        h[i] = tl_f32_to_f16(x[i]);
}

void tinylm_f16_to_f32(const uint16_t *restrict h, float *restrict x, size_t n)
{
    size_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8) {
        __m128i v = _mm_loadu_si128((const __m128i *)(h + i));
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(v));
    }
#endif
    for (; i < n; i++)
        x[i] = tl_f16_to_f32(h[i]);
}
