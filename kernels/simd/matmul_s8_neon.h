/* simd/matmul_s8_neon.h -- tinylm_matmul_s8 with AArch64 NEON. Uses simd/dot_s8_neon.h (included
 * before it, by dot_s8.h): tl_dot_s8_neon_madd is SDOT where the build has the dot-product extension,
 * SMULL/SMLAL2/SADALP otherwise. Exact int32 sums, so the same results as the portable loop.
 *
 * 4 rows of x or more: a 4 x 4 tile of y per step, 4 rows of x against 4 rows of w, 16 accumulators;
 * each step loads 8 vectors of 16 bytes and does 16 multiply-adds with them (the 1 x 8 loop of
 * dot_s8.h does 8 with 9). Rows past M or N reuse the last valid row (those results are not stored).
 * Fewer rows (a token at a time): one row of x against 8 rows of w, as the portable loop.
 */

/* out[i][j] = x_i . w_j over K values, for the 4 rows x_i and the 4 rows w_j */
static inline void tl_matmul_s8_neon_4x4(const int8_t *const xr[4], const int8_t *const wr[4], size_t K,
                                         int32_t out[4][4])
{
    int32x4_t c[4][4];
    size_t i, j, k;
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++)
            c[i][j] = vdupq_n_s32(0);
    for (k = 0; k + 16 <= K; k += 16) {
        int8x16_t a[4], b[4];
        for (i = 0; i < 4; i++) {
            a[i] = vld1q_s8(xr[i] + k);
            b[i] = vld1q_s8(wr[i] + k);
        }
        for (i = 0; i < 4; i++)
            for (j = 0; j < 4; j++)
                c[i][j] = tl_dot_s8_neon_madd(c[i][j], a[i], b[j]);
    }
    for (i = 0; i < 4; i++) {                      /* lane j = the sum of c[i][j]'s 4 lanes */
        vst1q_s32(out[i], vpaddq_s32(vpaddq_s32(c[i][0], c[i][1]), vpaddq_s32(c[i][2], c[i][3])));
        if (k < K)                                 /* the last K % 16 columns */
            for (j = 0; j < 4; j++)
                out[i][j] += tl_dot_s8(xr[i] + k, wr[j] + k, K - k);
    }
}

static void tl_matmul_s8_neon(const int8_t *restrict x, const int8_t *restrict w, int32_t *restrict y,
                              size_t M, size_t N, size_t K)
{
    size_t m0, n0, i, j;
    if (M < 4) {                                   /* blocks of 8 columns, then the last N % 8 */
        for (n0 = 0; n0 + 8 <= N; n0 += 8)
            for (m0 = 0; m0 < M; m0++)
                tl_dot_s8_neon_1x8(x + m0 * K, w + n0 * K, K, K, y + m0 * N + n0);
        for (; n0 < N; n0++)
            for (m0 = 0; m0 < M; m0++)
                y[m0 * N + n0] = tl_dot_s8(x + m0 * K, w + n0 * K, K);
        return;
    }
    /* 4 rows of w (4 * K bytes) stay in cache while every row of x passes by */
    for (n0 = 0; n0 < N; n0 += 4)
        for (m0 = 0; m0 < M; m0 += 4) {
            const int8_t *xr[4], *wr[4];
            int32_t out[4][4];
            for (i = 0; i < 4; i++) {
                xr[i] = x + (m0 + i < M ? m0 + i : M - 1) * K;
                wr[i] = w + (n0 + i < N ? n0 + i : N - 1) * K;
            }
            tl_matmul_s8_neon_4x4(xr, wr, K, out);
            for (i = 0; i < 4 && m0 + i < M; i++)
                for (j = 0; j < 4 && n0 + j < N; j++)
                    y[(m0 + i) * N + n0 + j] = out[i][j];
        }
}
