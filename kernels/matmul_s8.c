/* matmul_s8.c -- y (M, N) int32 = x (M, K) int8 @ w (N, K).T, exact. Contract: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "dot_s8.h"

#if TL_S8_AVX512
#include "gemm_s8_avx512.h"
#endif

void tinylm_matmul_s8(const int8_t *restrict x, const int8_t *restrict w, int32_t *restrict y,
                      size_t M, size_t N, size_t K)
{
    size_t m, n0 = 0;
#if TL_S8_AVX512
    if (M >= TL_S8_MR && K >= 4) {   /* enough rows to pay for packing w (K >= 4: see tl_s8_rows) */
        tl_matmul_s8_avx512(x, w, y, M, N, K);
        return;
    }
    for (; N >= 16 && n0 < N; n0 += 16) {       /* few rows: 16 rows of w at a time, as stored */
        size_t n = n0 + 16 <= N ? n0 : N - 16;    /* the last block overlaps the one before it */
        for (m = 0; m < M; m++) {
            __m512i lo, hi;
            tl_dot_s8_1x16_avx512(x + m * K, w + n * K, K, K, &lo, &hi);
            _mm512_storeu_si512((void *)(y + m * N + n), _mm512_add_epi32(lo, hi));
        }
    }
#endif
    /* blocks of 8 output columns: 8 rows of w (8 * K bytes) stay in cache while every row of x
     * passes by */
    for (; n0 + 8 <= N; n0 += 8)
        for (m = 0; m < M; m++)
            tl_dot_s8_1x8(x + m * K, w + n0 * K, K, K, y + m * N + n0);
    for (; n0 < N; n0++)                          /* the last N % 8 columns */
        for (m = 0; m < M; m++)
            y[m * N + n0] = tl_dot_s8(x + m * K, w + n0 * K, K);
}
