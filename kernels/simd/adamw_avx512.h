/* simd/adamw_avx512.h -- tinylm_adamw_f32's loop with AVX-512F, 16 values at a time. Included by
 * adamw.c. The same operations in the same order as the portable loop (no FMA); VSQRTPS is the
 * correctly rounded square root, so the bits are the same. Returns how many values it did (a multiple
 * of 16); the portable loop does the rest.
 */
#include <immintrin.h>

static inline size_t tl_adamw_f32_avx512(float *restrict p, const float *restrict g, float *restrict m,
                                         float *restrict v, size_t n, float decay, float beta1,
                                         float one_minus_beta1, float beta2, float one_minus_beta2,
                                         float eps_hat, float step)
{
    const __m512 d = _mm512_set1_ps(decay), b1 = _mm512_set1_ps(beta1), c1 = _mm512_set1_ps(one_minus_beta1);
    const __m512 b2 = _mm512_set1_ps(beta2), c2 = _mm512_set1_ps(one_minus_beta2);
    const __m512 e = _mm512_set1_ps(eps_hat), s = _mm512_set1_ps(step);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 gi = _mm512_loadu_ps(g + i);
        const __m512 mi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(m + i), b1), _mm512_mul_ps(gi, c1));
        const __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), b2),
                                        _mm512_mul_ps(_mm512_mul_ps(gi, gi), c2));
        const __m512 upd = _mm512_mul_ps(_mm512_div_ps(mi, _mm512_add_ps(_mm512_sqrt_ps(vi), e)), s);
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        _mm512_storeu_ps(p + i, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(p + i), d), upd));
    }
    return i;
}
