/* quant_s8.c -- symmetric int8 quantization per row and group, and back. Contract: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "half.h"

/* The steps of one group, shared with the SIMD variants (their tails and their scale rule). */

/* max(amax, |x[k]| for k < n), and *has_nan set when one of them is NaN */
static inline float tl_quant_s8_amax(const float *x, size_t n, float amax, int *has_nan)
{
    size_t k;
    for (k = 0; k < n; k++) {
        float a = tl_bits_f32(tl_f32_bits(x[k]) & 0x7fffffffu);   /* |x| */
        if (a != a)
            *has_nan = 1;
        else if (a > amax)
            amax = a;
    }
    return amax;
}

/* the group's scale: max |x| / 127, or NaN when the group holds a NaN */
static inline float tl_quant_s8_scale(float amax, int has_nan)
{
    return has_nan ? tl_bits_f32(0x7fc00000u) : amax / 127.0f;
}

/* can the group be divided by s? Not when s is 0, NaN or inf (then the whole group is q = 0) */
static inline int tl_quant_s8_usable(float s)
{
    return s > 0.0f && !(s > 3.40282347e38f);
}

/* one value: round_half_even(x / s), clamped to [-127, 127] */
static inline int8_t tl_quant_s8_one(float x, float s)
{
    float r = tl_round_even(x / s);
    if (r > 127.0f)
        r = 127.0f;
    if (r < -127.0f)
        r = -127.0f;
    return (int8_t)r;
}

#if defined(__AVX512F__)
#include "simd/quant_s8_avx512.h"
#elif defined(__AVX2__)
#include "simd/quant_s8_avx2.h"
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include "simd/quant_s8_neon.h"
#endif

void tinylm_quantize_s8(const float *restrict x, int8_t *restrict q, float *restrict scale,
                        size_t M, size_t K, size_t group_size)
{
#if defined(__AVX512F__)
    tl_quantize_s8_avx512(x, q, scale, M, K, group_size);
#elif defined(__AVX2__)
    tl_quantize_s8_avx2(x, q, scale, M, K, group_size);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    tl_quantize_s8_neon(x, q, scale, M, K, group_size);
#else
    size_t G = K / group_size, m, g, k;
    for (m = 0; m < M; m++)
        for (g = 0; g < G; g++) {
            const float *xg = x + m * K + g * group_size;       /* group g of row m: (group_size,) */
            int8_t *qg = q + m * K + g * group_size;
            int has_nan = 0;
            float amax = tl_quant_s8_amax(xg, group_size, 0.0f, &has_nan);
            float s = tl_quant_s8_scale(amax, has_nan);
            scale[m * G + g] = s;
            if (tl_quant_s8_usable(s))
                for (k = 0; k < group_size; k++)
                    qg[k] = tl_quant_s8_one(xg[k], s);
            else                                      /* 0, NaN or inf: the whole group is q = 0 */
                for (k = 0; k < group_size; k++)
                    qg[k] = 0;
        }
#endif
}

void tinylm_dequantize_s8(const int8_t *restrict q, const float *restrict scale, float *restrict y,
                          size_t M, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, k;
    for (m = 0; m < M; m++)
        for (k = 0; k < K; k++)
            y[m * K + k] = (float)q[m * K + k] * scale[m * G + k / group_size];
}
