/* cross_entropy.c -- the language-model loss: softmax and negative log-likelihood per row, and its
 * gradient (contracts in tinylm_kernels.h). Fused as tinylm.autograd.cross_entropy is: -log p_t is
 * log(sum e) - (z_t - max), computed from the shifted logits, never the log of a tiny probability.
 *
 * No libm: the exponential is tinylm_exp_f32 (softmax.c), the logarithm is tl_log below.
 */
#include <string.h>

#include "tinylm_kernels.h"

/* log(x) for a positive finite float, in double: x = 2^k m with m in [sqrt(1/2), sqrt(2)), and
 * log m = 2 atanh(f) = 2 (f + f^3/3 + f^5/5 + ...) with f = (m - 1) / (m + 1), |f| <= 0.1716; the terms
 * up to f^15 leave an error below 1e-13, far under float rounding. (Used once per row: a row's sum.)
 * Written with the double operations the other kernels already use (float -> double, +, *, /; no
 * subtraction or comparison in double), so a microcontroller links no further helper from libgcc. */
static float tl_log(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float k = (float)((int32_t)(bits >> 23) - 127);      /* x >= 1 here (a sum whose largest term is 1) */
    bits = (bits & 0x007fffffu) | 0x3f800000u;           /* m in [1, 2) */
    float mf;
    memcpy(&mf, &bits, sizeof mf);
    if (mf > 1.41421356f) {                              /* (exact halving: m / 2 in [0.707, 1)) */
        mf = mf * 0.5f;
        k = k + 1.0f;
    }
    const double f = (double)(mf - 1.0f) / ((double)mf + 1.0), f2 = f * f;   /* mf - 1 is exact (Sterbenz) */
    double series = 1.0 / 15.0;
    for (int i = 13; i >= 1; i -= 2)
        series = series * f2 + 1.0 / (double)(float)i;   /* 1 + f^2/3 + f^4/5 + ... + f^14/15 */
    return (float)((double)k * 0.6931471805599453 + 2.0 * f * series);
}

#define CE_BLOCK 64   /* z - max for CE_BLOCK values at a time: one tinylm_exp_f32 call each (vectorized) */

void tinylm_cross_entropy_f32(const float *restrict logits, const int32_t *restrict targets,
                              float *restrict probs, float *restrict nll, size_t N, size_t V)
{
    float t[CE_BLOCK];
    for (size_t r = 0; r < N; r++) {
        const float *z = logits + r * V;
        float *p = probs + r * V;
        float max = z[0];
        for (size_t j = 1; j < V; j++)
            if (z[j] > max)
                max = z[j];
        for (size_t start = 0; start < V; start += CE_BLOCK) {      /* p = e = exp(z - max) */
            const size_t m = V - start < CE_BLOCK ? V - start : CE_BLOCK;
            for (size_t j = 0; j < m; j++)
                t[j] = z[start + j] - max;
            tinylm_exp_f32(t, p + start, m);
        }
        float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        size_t j = 0;
        for (; j + 8 <= V; j += 8)
            for (size_t k = 0; k < 8; k++)
                acc[k] += p[j + k];
        float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; j < V; j++)
            sum += p[j];
        for (j = 0; j < V; j++)
            p[j] = p[j] / sum;
        nll[r] = targets[r] < 0 ? 0.0f : tl_log(sum) - (z[targets[r]] - max);
    }
}

/* dloss/dz = (softmax(z) - onehot(target)) * dloss / n_valid: the softmax from the forward, reused */
void tinylm_cross_entropy_backward_f32(const float *restrict probs, const int32_t *restrict targets,
                                       float *restrict dlogits, size_t N, size_t V, float scale)
{
    for (size_t r = 0; r < N; r++) {
        const float *p = probs + r * V;
        float *d = dlogits + r * V;
        if (targets[r] < 0) {
            for (size_t j = 0; j < V; j++)
                d[j] = 0.0f;
            continue;
        }
        for (size_t j = 0; j < V; j++)
            d[j] = p[j] * scale;
        d[targets[r]] = (p[targets[r]] - 1.0f) * scale;
    }
}
