/* adamw.c -- tinylm_adamw_f32: one AdamW step over a parameter array, in place (contract in
 * tinylm_kernels.h). The operations are tinylm.optim.AdamW's, in its order, so both give the same bits:
 * the only function that is not a plain multiply or add is the square root, correctly rounded on both
 * sides (NumPy's np.sqrt; here the SIMD instruction, or tl_sqrt_newton rounded to float).
 */
#include "tinylm_kernels.h"
#include "newton_sqrt.h"

#if defined(__AVX512F__)
#include "simd/adamw_avx512.h"
#endif

void tinylm_adamw_f32(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                      float decay, float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
                      float eps_hat, float step)
{
    size_t i = 0;
#if defined(__AVX512F__)
    i = tl_adamw_f32_avx512(p, g, m, v, n, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps_hat, step);
#endif
    for (; i < n; i++) {                     /* the portable loop (and the SIMD path's tail) */
        const float gi = g[i];
        const float mi = m[i] * beta1 + gi * one_minus_beta1;             /* running mean of g */
        const float vi = v[i] * beta2 + (gi * gi) * one_minus_beta2;      /* running mean of g^2 */
        const float root = vi > 0.0f && vi <= 3.4028234663852886e38f ? (float)tl_sqrt_newton((double)vi)
                                                                        : vi;   /* sqrt of 0, inf, NaN */
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay + (mi / (root + eps_hat)) * step;
    }
}
