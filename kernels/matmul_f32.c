/* matmul_f32.c -- the fp32 matmuls, contracts in tinylm_kernels.h:
 *   tinylm_matmul_f32     y (M, N) = x (M, K) @ w (N, K).T (+ b)    a Linear layer's forward
 *   tinylm_matmul_nn_f32  y (M, N) = x (M, K) @ w (K, N)            its backward's dx = dy @ W
 *   tinylm_matmul_tn_f32  y (M, N) = x (K, M).T @ w (K, N)          and dW = dy^T @ x
 *                         (x's rows x_row apart: M columns of a wider x, for a block of rows of y) */
#include "tinylm_kernels.h"

#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#include "simd/matmul_f32_avx512.h"
#elif defined(__AVX2__) && defined(__FMA__)
#include "simd/matmul_f32_avx2.h"
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include "simd/matmul_f32_neon.h"
#endif

void tinylm_matmul_f32(const float *restrict x, const float *restrict w, const float *restrict b,
                       float *restrict y, size_t M, size_t N, size_t K)
{
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
    tl_matmul_f32_avx512(x, w, b, y, M, N, K);
#elif defined(__AVX2__) && defined(__FMA__)
    tl_matmul_f32_avx2(x, w, b, y, M, N, K);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    tl_matmul_f32_neon(x, w, b, y, M, N, K);
#else
    size_t m, n, k;
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
#endif
}

void tinylm_matmul_nn_f32(const float *restrict x, const float *restrict w, float *restrict y,
                          size_t M, size_t N, size_t K)
{
    size_t m, n, k;
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
    if (M >= 6 && K > 0) {                /* the packed GEMM, with w packed from its K-first rows */
        tl_matmul_f32_avx512_packed(x, 0, w, 1, y, M, N, K);
        return;
    }
#endif
    for (m = 0; m < M; m++) {             /* y[m, :] = sum over k of x[m, k] * w[k, :], row by row */
        float *ym = y + m * N;                       /* row m of y: (N,) */
        for (n = 0; n < N; n++)
            ym[n] = 0.0f;
        for (k = 0; k < K; k++) {
            const float xmk = x[m * K + k];
            const float *wk = w + k * N;             /* row k of w: (N,) */
            for (n = 0; n < N; n++)
                ym[n] += xmk * wk[n];
        }
    }
}

void tinylm_matmul_tn_f32(const float *restrict x, size_t x_row, const float *restrict w, float *restrict y,
                          size_t M, size_t N, size_t K)
{
    size_t m, n, k;
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
    if (M >= 6 && K > 0) {                /* the packed GEMM, x and w both packed from their K-first rows */
        tl_matmul_f32_avx512_packed(x, x_row, w, 1, y, M, N, K);
        return;
    }
#endif
    for (m = 0; m < M; m++)
        for (n = 0; n < N; n++)
            y[m * N + n] = 0.0f;
    for (k = 0; k < K; k++) {             /* y[m, :] += x[k, m] * w[k, :]: row k of x and of w, once each */
        const float *xk = x + k * x_row, *wk = w + k * N;
        for (m = 0; m < M; m++) {
            const float xkm = xk[m];
            float *ym = y + m * N;
            for (n = 0; n < N; n++)
                ym[n] += xkm * wk[n];
        }
    }
}
