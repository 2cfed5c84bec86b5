/* matmul_f32.c -- y (M, N) = x (M, K) @ w (N, K).T (+ b), fp32. Contract: tinylm_kernels.h. */
#include "tinylm_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TL_T float
#define TL_LOAD8(p) _mm256_loadu_ps(p)
#define TL_SCALAR(v) (v)
#define TL_AS_F32(row, buf, n) ((void)(buf), (row))   /* fp32 rows are used in place */
#define TL_NAME tl_matmul_f32_avx2
#include "matmul_avx2.h"
#endif

void tinylm_matmul_f32(const float *restrict x, const float *restrict w, const float *restrict b,
                       float *restrict y, size_t M, size_t N, size_t K)
{
    size_t m, n, k;
#if defined(__AVX2__) && defined(__FMA__)
    tl_matmul_f32_avx2(x, w, y, M, N, K);
    if (b)
        for (m = 0; m < M; m++)
            for (n = 0; n < N; n++)
                y[m * N + n] += b[n];
    (void)k;
    return;
#endif
    for (m = 0; m < M; m++) {
        const float *xm = x + m * K;                 /* row m of x: (K,) */
        for (n = 0; n < N; n++) {
            const float *wn = w + n * K;             /* row n of w: (K,) */
            float acc = 0.0f;
            for (k = 0; k < K; k++)
                acc += xm[k] * wn[k];
            y[m * N + n] = b ? acc + b[n] : acc;
        }
    }
}
