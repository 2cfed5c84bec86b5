/* matmul_s8.c -- y (M, N) int32 = x (M, K) int8 @ w (N, K).T, exact. Contract: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "dot_s8.h"

#if TL_S8_AVX512
#include "gemm_s8_avx512.h"

#define TL_S8_KC (TL_S8_PANEL_WORDS / TL_S8_NR - 1) * 4   /* columns per panel: 2300 */

/* Panels of 32 rows of w and TL_S8_KC columns (one "group" per panel); a 6 x 32 tile of y per
 * step. Lanes past N are masked off; the sums of earlier column blocks wait in y (int32 adds:
 * exact). */
static void tl_matmul_s8_avx512(const int8_t *x, const int8_t *w, int32_t *y, size_t M, size_t N,
                                size_t K)
{
    int32_t wp[TL_S8_PANEL_WORDS];
    int8_t pad[TL_S8_KC + 3];
    size_t n0, k0, m, i, v;
    for (n0 = 0; n0 < N; n0 += TL_S8_NR) {
        size_t nr = N - n0 < TL_S8_NR ? N - n0 : TL_S8_NR;
        __mmask16 lanes[2];
        lanes[0] = (__mmask16)(nr >= 16 ? 0xffffu : (1u << nr) - 1u);
        lanes[1] = (__mmask16)(nr >= 32 ? 0xffffu : nr <= 16 ? 0u : (1u << (nr - 16)) - 1u);
        for (k0 = 0; k0 < K; k0 += TL_S8_KC) {
            size_t kc = K - k0 < TL_S8_KC ? K - k0 : TL_S8_KC;
            tl_s8_pack(w + n0 * K + k0, K, nr, kc, 1, wp);
            for (m = 0; m < M; m += TL_S8_MR) {
                size_t mr = M - m < TL_S8_MR ? M - m : TL_S8_MR;
                const int8_t *xr[TL_S8_MR];
                __m512i c[TL_S8_MR][2];
                tl_s8_rows(x, M, K, m, k0, kc, kc, pad, xr);
                tl_s8_tile(xr, kc, wp, c);
                for (i = 0; i < mr; i++)
                    for (v = 0; v < 2; v++) {
                        int32_t *yr = y + (m + i) * N + n0 + 16 * v;
                        if (k0)
                            c[i][v] = _mm512_add_epi32(c[i][v], _mm512_maskz_loadu_epi32(lanes[v], yr));
                        _mm512_mask_storeu_epi32(yr, lanes[v], c[i][v]);
                    }
            }
        }
    }
}
#endif

void tinylm_matmul_s8(const int8_t *restrict x, const int8_t *restrict w, int32_t *restrict y,
                      size_t M, size_t N, size_t K)
{
    size_t m, n0 = 0;
#if TL_S8_AVX512
    if (M >= TL_S8_MR) {     /* enough rows to pay for packing w */
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
