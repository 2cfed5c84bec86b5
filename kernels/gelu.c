/* gelu.c -- GELU, tanh form, computed as x * sigmoid(2u) like tinylm.autograd.gelu, and its derivative
 * (contracts in tinylm_kernels.h). The exponential is tinylm_exp_f32 (softmax.c): no libm.
 */
#include "tinylm_kernels.h"

/* the constants of tinylm.autograd.gelu, rounded to float as NumPy rounds them against float32 data */
#define GELU_K1 (-0x1.2444f2p-4f)   /* (float)(-2 * sqrt(2/pi) * 0.044715) = -0.071354814 */
#define GELU_K2 0x1.988454p+0f       /* (float)(2 * sqrt(2/pi)) = 1.5957692 */
#define GELU_K3 0x1.b6676cp-3f       /* (float)(6 * sqrt(2/pi) * 0.044715) = 0.21406445 */

/* Blocks of GELU_BLOCK values: t for the block, one tinylm_exp_f32 call over it (its loop vectorizes,
 * a call per value would not), then y. On a PC with SIMD, 128 values per block (2 x 512 bytes of stack)
 * ran GELU 1.5x faster than 64 on an AVX-512 Xeon (fewer short loops; 256 hardly faster again); a
 * microcontroller keeps 64 (2 x 256 bytes of its small stack). */
#if defined(__AVX2__) || defined(__AVX512F__)
#define GELU_BLOCK 128
#else
#define GELU_BLOCK 64
#endif

/* e[i] = exp(-2u) for the m <= GELU_BLOCK values of xb, u = sqrt(2/pi) (x + 0.044715 x^3): +inf for very
 * negative x (and then y = -0). The part of a block that forward and backward share. */
static inline void gelu_exp_neg2u(const float *restrict xb, float *restrict e, size_t m)
{
    float t[GELU_BLOCK];
    for (size_t i = 0; i < m; i++) {
        const float d = xb[i];
        float u = d * d;
        u = u * GELU_K1;
        u = u - GELU_K2;
        t[i] = u * d;                       /* t = -2u */
    }
    tinylm_exp_f32(t, e, m);
}

void tinylm_gelu_f32(const float *restrict x, float *restrict y, size_t n)
{
    float e[GELU_BLOCK];
    for (size_t start = 0; start < n; start += GELU_BLOCK) {
        const size_t m = n - start < GELU_BLOCK ? n - start : GELU_BLOCK;
        const float *xb = x + start;
        gelu_exp_neg2u(xb, e, m);
        for (size_t i = 0; i < m; i++)
            y[start + i] = xb[i] * (1.0f / (e[i] + 1.0f));   /* x * sigmoid(2u) */
    }
}

/* dy/dx = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2) with s = sigmoid(2u) (derivation: the
 * docstring of tinylm.autograd.gelu), written as ((K3 x^2 + K2) x (1 - s) + 1) s. Same blocks as the
 * forward: s is recomputed from x rather than kept. */
void tinylm_gelu_backward_f32(const float *restrict x, const float *restrict dy, float *restrict dx, size_t n)
{
    float e[GELU_BLOCK];
    for (size_t start = 0; start < n; start += GELU_BLOCK) {
        const size_t m = n - start < GELU_BLOCK ? n - start : GELU_BLOCK;
        const float *xb = x + start;
        gelu_exp_neg2u(xb, e, m);
        for (size_t i = 0; i < m; i++) {
            const float d = xb[i];
            const float s = 1.0f / (e[i] + 1.0f);            /* sigmoid(2u) */
            float g = d * d;
            g = g * GELU_K3;
            g = g + GELU_K2;
            g = g * d;
            g = g * (1.0f - s);
            g = g + 1.0f;
            g = g * s;
            dx[start + i] = g * dy[start + i];
        }
    }
}
