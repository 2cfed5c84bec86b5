/* gelu.c -- tinylm_gelu_f32: GELU, tanh form, computed as x * sigmoid(2u) like tinylm.autograd.gelu
 * (contract in tinylm_kernels.h). The exponential is tinylm_exp_f32 (softmax.c): no libm.
 */
#include "tinylm_kernels.h"

/* the constants of tinylm.autograd.gelu, rounded to float as NumPy rounds them against float32 data */
#define GELU_K1 (-0x1.2444f2p-4f)   /* (float)(-2 * sqrt(2/pi) * 0.044715) = -0.071354814 */
#define GELU_K2 0x1.988454p+0f       /* (float)(2 * sqrt(2/pi)) = 1.5957692 */

void tinylm_gelu_f32(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const float d = x[i];
        float t = d * d;
        t = t * GELU_K1;
        t = t - GELU_K2;
        t = t * d;                      /* t = -2u,  u = sqrt(2/pi) (x + 0.044715 x^3) */
        float e;
        tinylm_exp_f32(&t, &e, 1);      /* exp(-2u): +inf for very negative x, and then y = -0 */
        const float s = 1.0f / (e + 1.0f);   /* sigmoid(2u) = 0.5 (1 + tanh u) */
        y[i] = d * s;
    }
}
