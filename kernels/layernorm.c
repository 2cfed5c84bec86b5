/* layernorm.c -- tinylm_layernorm_f32: LayerNorm over the last axis (contract in tinylm_kernels.h).
 *
 * No libm: the square root is taken in double precision by Newton's method from a bit-level first
 * guess (5 steps take its ~4% error below 1e-28, far past double precision), then rounded to float,
 * which gives the correctly rounded float sqrt except in astronomically rare double-rounding cases.
 */
#include <string.h>

#include "tinylm_kernels.h"

/* sqrt(d) for a positive finite double d, by Newton's method (no libm). */
static double sqrt_newton(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    bits = 0x1FF7A3BEA91D9B1Bull + (bits >> 1);   /* halves the exponent: a guess within ~4% */
    double g;
    memcpy(&g, &bits, sizeof g);
    for (int i = 0; i < 5; i++)
        g = 0.5 * (g + d / g);
    return g;
}

/* sum of n floats in 8 interleaved partial sums (i = j mod 8), added pairwise, then the tail: a
 * fixed order the compiler can vectorize (a single running sum it may not reorder). */
static float sum8(const float *restrict x, float shift, size_t n, int squares)
{
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) {
            const float d = x[i + j] - shift;
            acc[j] += squares ? d * d : d;
        }
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) {
        const float d = x[i] - shift;
        s += squares ? d * d : d;
    }
    return s;
}

void tinylm_layernorm_f32(const float *restrict x, const float *restrict w, const float *restrict b,
                          float *restrict y, size_t rows, size_t C, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        const float mean = sum8(xr, 0.0f, C, 0) / (float)C;
        const float v = sum8(xr, mean, C, 1) / (float)C + eps;        /* var + eps */
        float rstd;
        if (v > 0.0f && v <= 3.4028234663852886e38f)
            rstd = 1.0f / (float)sqrt_newton((double)v);
        else
            rstd = v == 0.0f ? 1.0f / 0.0f : (v > 0.0f ? 0.0f : v - v);  /* 1/sqrt(0), 1/sqrt(inf), NaN */
        for (size_t i = 0; i < C; i++) {
            const float h = (xr[i] - mean) * rstd;            /* xhat */
            yr[i] = b ? h * w[i] + b[i] : h * w[i];
        }
    }
}
