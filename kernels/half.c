/* half.c -- arrays of fp32 <-> fp16 (binary16). Contract: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "half.h"

#if defined(__F16C__)
#include "simd/half_f16c.h"
#elif defined(__aarch64__) && defined(__ARM_NEON) && TL_F16_HW
#include "simd/half_neon.h"
#endif

void tinylm_f32_to_f16(const float *restrict x, uint16_t *restrict h, size_t n)
{
#if defined(__F16C__)
    tl_f32_to_f16_f16c(x, h, n);
#elif defined(__aarch64__) && defined(__ARM_NEON) && TL_F16_HW
    tl_f32_to_f16_neon(x, h, n);
#else
    size_t i;
    for (i = 0; i < n; i++)
        h[i] = tl_f32_to_f16(x[i]);
#endif
}

void tinylm_f16_to_f32(const uint16_t *restrict h, float *restrict x, size_t n)
{
#if defined(__F16C__)
    tl_f16_to_f32_f16c(h, x, n);
#elif defined(__aarch64__) && defined(__ARM_NEON) && TL_F16_HW
    tl_f16_to_f32_neon(h, x, n);
#else
    size_t i;
    for (i = 0; i < n; i++)
        x[i] = tl_f16_to_f32(h[i]);
#endif
}
