/* simd/layernorm_avx2.h -- the 8 interleaved partial sums of layernorm.c, as one AVX vector of 8 lanes.
 *
 * Lane j adds the values i = j mod 8 in the order the portable loop does, with the same operations (no
 * FMA), so the partial sums, and everything layernorm.c computes from them, keep their bits. (Left to
 * itself, the compiler vectorized the portable loop across i instead, with shuffles, several times slower.)
 * Each function handles the first n - n % 8 values, stores the 8 partial sums and returns how many
 * values it took; layernorm.c adds the tail.
 */
#include <immintrin.h>

/* acc[j] = sum over i = j mod 8 of (x[i] - shift), or of its square when squares */
static inline size_t tl_layernorm_avx2_sum8(const float *x, float shift, size_t n, int squares, float acc[8])
{
    const __m256 s = _mm256_set1_ps(shift);
    __m256 a = _mm256_setzero_ps();
    size_t i = 0;
    if (squares)
        for (; i + 8 <= n; i += 8) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), s);
            a = _mm256_add_ps(a, _mm256_mul_ps(d, d));
        }
    else
        for (; i + 8 <= n; i += 8)
            a = _mm256_add_ps(a, _mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(acc, a);
    return i;
}

/* acc_a[j] = sum of dy*w, acc_b[j] = sum of dy*w * ((x - mean) * rstd), over i = j mod 8 */
static inline size_t tl_layernorm_avx2_grad_sums8(const float *x, const float *w, const float *dy, size_t n,
                                                  float mean, float rstd, float acc_a[8], float acc_b[8])
{
    const __m256 m = _mm256_set1_ps(mean), r = _mm256_set1_ps(rstd);
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 dh = _mm256_mul_ps(_mm256_loadu_ps(dy + i), _mm256_loadu_ps(w + i));    /* dxhat */
        const __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), r);        /* xhat */
        a = _mm256_add_ps(a, dh);
        b = _mm256_add_ps(b, _mm256_mul_ps(dh, h));
    }
    _mm256_storeu_ps(acc_a, a);
    _mm256_storeu_ps(acc_b, b);
    return i;
}
