/* simd/linear_s8_avx512.h -- tinylm_linear_s8 with AVX-512 VNNI (F + BW + VNNI: TL_S8_AVX512),
 * after the activations are quantized. Uses simd/dot_s8_avx512.h, simd/gemm_s8_avx512.h and
 * simd/linear_s8_avx2.h (included before it: a CPU with AVX-512 has AVX2).
 *
 * Which shapes take which loop (tl_linear_s8_avx512, at the end):
 *   6 rows of x or more, K >= 4: packed panels of w_q (simd/gemm_s8_avx512.h), through the int32
 *     matmul when there is one scale per row; with K < 4 the panels' 4-byte reads of x_q would pass
 *     its end, so those shapes go on below.
 *   fewer rows, group size 32 or a multiple of 64, N >= 16: 1 x 16 dots on w_q as stored.
 *   anything else: the AVX2 loop (tl_linear_s8_avx2).
 * Every loop adds each output's groups in order with the portable loop's float operations: the
 * same bits.
 */

/* Packed panels (simd/gemm_s8_avx512.h): panels of 32 rows of w_q, up to
 * TL_S8_MAX_GROUPS groups at a time, and a 6 x 32 tile of y per step. After each group's exact
 * int32 dots, each lane (one output) adds (x_scale * w_scale) * (float)dot to its running sum, in
 * group order, as the portable loop does. The sums of earlier panels' groups wait in y (a float
 * store and load: exact); the bias is added after the last group. */
static void tl_linear_s8_avx512_groups(const int8_t *restrict x_q, const float *restrict x_scale,
                                       const int8_t *restrict w_q, const float *restrict w_scale,
                                       const float *restrict b, float *restrict y,
                                       size_t M, size_t N, size_t K, size_t group_size)
{
    int32_t wp[TL_S8_PANEL_WORDS];
    float sw[TL_S8_MAX_GROUPS][TL_S8_NR];        /* sw[g][j] = w_scale[n0 + j, g0 + g] */
    int8_t pad[TL_S8_PANEL_WORDS / TL_S8_NR * 4 + 3];   /* >= ng * group_size + 3 */
    size_t G = K / group_size, gw = TL_S8_GROUP_WORDS(group_size);
    size_t per_panel = TL_S8_PANEL_WORDS / gw < TL_S8_MAX_GROUPS ? TL_S8_PANEL_WORDS / gw
                                                                  : TL_S8_MAX_GROUPS;
    size_t n0, g0, g, m, i, j, v;
    for (n0 = 0; n0 < N; n0 += TL_S8_NR) {
        size_t nr = N - n0 < TL_S8_NR ? N - n0 : TL_S8_NR;
        __mmask16 lanes[2];                       /* the columns n0 .. n0 + nr - 1 of y */
        lanes[0] = tl_dot_s8_avx512_lanes16(nr);
        lanes[1] = tl_dot_s8_avx512_lanes16(nr > 16 ? nr - 16 : 0);
        for (g0 = 0; g0 < G; g0 += per_panel) {
            size_t ng = G - g0 < per_panel ? G - g0 : per_panel;
            int last = g0 + ng == G;
            tl_gemm_s8_avx512_pack(w_q + n0 * K + g0 * group_size, K, nr, group_size, ng, wp);
            for (g = 0; g < ng; g++)
                for (j = 0; j < TL_S8_NR; j++)
                    sw[g][j] = j < nr ? w_scale[(n0 + j) * G + g0 + g] : 0.0f;
            for (m = 0; m < M; m += TL_S8_MR) {
                size_t mr = M - m < TL_S8_MR ? M - m : TL_S8_MR;
                const int8_t *xr[TL_S8_MR];
                const float *sx[TL_S8_MR];
                __m512 acc[TL_S8_MR][2];
                tl_gemm_s8_avx512_rows(x_q, M, K, m, g0 * group_size, ng * group_size, group_size, pad, xr);
                for (i = 0; i < TL_S8_MR; i++) {     /* rows past M repeat the last row */
                    size_t r = m + (i < mr ? i : mr - 1);
                    sx[i] = x_scale + r * G + g0;
                    for (v = 0; v < 2; v++)
                        acc[i][v] = g0 ? _mm512_maskz_loadu_ps(lanes[v], y + r * N + n0 + 16 * v)
                                       : _mm512_setzero_ps();
                }
                for (g = 0; g < ng; g++) {
                    __m512i c[TL_S8_MR][2];
                    const int8_t *xg[TL_S8_MR];
                    for (i = 0; i < TL_S8_MR; i++)
                        xg[i] = xr[i] + g * group_size;
                    tl_gemm_s8_avx512_tile(xg, group_size, wp + g * gw, c);
                    for (i = 0; i < TL_S8_MR; i++) {
                        __m512 s = _mm512_set1_ps(sx[i][g]);
                        for (v = 0; v < 2; v++) {
                            __m512 scale = _mm512_mul_ps(s, _mm512_loadu_ps(sw[g] + 16 * v));
                            acc[i][v] = _mm512_add_ps(acc[i][v],
                                                      _mm512_mul_ps(scale, _mm512_cvtepi32_ps(c[i][v])));
                        }
                    }
                }
                for (i = 0; i < mr; i++)
                    for (v = 0; v < 2; v++) {
                        float *yr = y + (m + i) * N + n0 + 16 * v;
                        if (last && b)
                            acc[i][v] = _mm512_add_ps(acc[i][v],
                                                      _mm512_maskz_loadu_ps(lanes[v], b + n0 + 16 * v));
                        _mm512_mask_storeu_ps(yr, lanes[v], acc[i][v]);
                    }
            }
        }
    }
}

/* The int32 dots (M, N) that a GEMM wrote into y's memory (through vector loads and stores only)
 * become, in place, y = (0 + (x_scale * w_scale) * (float)dot) + b: the portable loop's operations for
 * one group per row. Shared by the VNNI and the AMX per-channel paths. */
static void tl_linear_s8_avx512_scale_dots(const float *restrict x_scale, const float *restrict w_scale,
                                           const float *restrict b, float *restrict y, size_t M, size_t N)
{
    size_t m, n0;
    for (m = 0; m < M; m++) {
        const __m512 sx = _mm512_set1_ps(x_scale[m]);
        for (n0 = 0; n0 < N; n0 += 16) {
            __mmask16 live = tl_dot_s8_avx512_lanes16(N - n0);
            float *yr = y + m * N + n0;
            __m512 dot = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(live, yr));
            __m512 acc = _mm512_add_ps(_mm512_setzero_ps(),
                                       _mm512_mul_ps(_mm512_mul_ps(sx, _mm512_maskz_loadu_ps(live, w_scale + n0)),
                                                     dot));
            if (b)
                acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(live, b + n0));
            _mm512_mask_storeu_ps(yr, live, acc);
        }
    }
}

/* One group per row (per-channel scales): the int32 dots of tl_gemm_s8_avx512 go into y's memory first,
 * then tl_linear_s8_avx512_scale_dots makes them floats in place. */
static void tl_linear_s8_avx512_channel(const int8_t *restrict x_q, const float *restrict x_scale,
                                        const int8_t *restrict w_q, const float *restrict w_scale,
                                        const float *restrict b, float *restrict y,
                                        size_t M, size_t N, size_t K)
{
    tl_gemm_s8_avx512(x_q, w_q, (int32_t *)(void *)y, M, N, K);
    tl_linear_s8_avx512_scale_dots(x_scale, w_scale, b, y, M, N);
}

/* Few rows of x (a token at a time): 16 rows of w_q at a time read as stored (simd/dot_s8_avx512.h), for
 * group sizes of 32 (two groups per 64-column load) or a multiple of 64, and N >= 16. Lane j of
 * every vector is output column n0 + j; the last block of 16 overlaps the one before it (those
 * outputs are computed twice, the same bits). The weight scales of up to 64 groups are transposed
 * into sw first; as in the AVX2 path, the running sums of earlier chunks of groups wait in y
 * (exact). The same order of float operations per output as the portable loop. */
static void tl_linear_s8_avx512_few(const int8_t *restrict x_q, const float *restrict x_scale,
                                    const int8_t *restrict w_q, const float *restrict w_scale,
                                    const float *restrict b, float *restrict y,
                                    size_t M, size_t N, size_t K, size_t group_size)
{
    __m512 sw[TL_S8_MAX_GROUPS];                 /* sw[g] lane j = w_scale[n0 + j, g0 + g] */
    size_t G = K / group_size, i, g0, m, g, j;
    for (i = 0; i < N; i += 16) {
        size_t n0 = i + 16 <= N ? i : N - 16;
        const int8_t *wb = w_q + n0 * K;
        for (g0 = 0; g0 < G; g0 += TL_S8_MAX_GROUPS) {
            size_t gc = G - g0 < TL_S8_MAX_GROUPS ? G - g0 : TL_S8_MAX_GROUPS;
            for (g = 0; g < gc; g += 16) {            /* (floats moved as 32-bit words) */
                const void *cols[16];
                __m512i t[16];
                size_t c;
                for (j = 0; j < 16; j++)
                    cols[j] = w_scale + (n0 + j) * G + g0 + g;
                tl_gemm_s8_avx512_transpose16(cols, 4 * (gc - g < 16 ? gc - g : 16), t);
                for (c = 0; c < 16 && g + c < gc; c++)
                    sw[g + c] = _mm512_castsi512_ps(t[c]);
            }
            for (m = 0; m < M; m++) {
                const int8_t *xr = x_q + m * K;
                const float *sx = x_scale + m * G + g0;
                float *yr = y + m * N + n0;
                __m512 acc = g0 ? _mm512_loadu_ps(yr) : _mm512_setzero_ps();
                __m512i lo, hi;
                for (g = 0; g < gc; g++) {
                    size_t k = (g0 + g) * group_size;
                    if (group_size == 32 && g + 1 < gc) {     /* groups g, g + 1: 64 columns */
                        tl_dot_s8_avx512_1x16(xr + k, wb + k, K, 16, 64, &lo, &hi);
                        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(sx[g]), sw[g]),
                                                               _mm512_cvtepi32_ps(lo)));
                        g++;
                        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(sx[g]), sw[g]),
                                                               _mm512_cvtepi32_ps(hi)));
                    } else {
                        tl_dot_s8_avx512_1x16(xr + k, wb + k, K, 16, group_size, &lo, &hi);
                        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(sx[g]), sw[g]),
                                                               _mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi))));
                    }
                }
                if (b && g0 + gc == G)
                    acc = _mm512_add_ps(acc, _mm512_loadu_ps(b + n0));
                _mm512_storeu_ps(yr, acc);
            }
        }
    }
}

static void tl_linear_s8_avx512(const int8_t *restrict x_q, const float *restrict x_scale,
                                const int8_t *restrict w_q, const float *restrict w_scale,
                                const float *restrict b, float *restrict y,
                                size_t M, size_t N, size_t K, size_t group_size)
{
    if (M >= TL_S8_MR && K >= 4 && group_size == K)
        tl_linear_s8_avx512_channel(x_q, x_scale, w_q, w_scale, b, y, M, N, K);
    else if (M >= TL_S8_MR && K >= 4 && TL_S8_GROUP_WORDS(group_size) <= TL_S8_PANEL_WORDS)
        tl_linear_s8_avx512_groups(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
    else if ((group_size == 32 || group_size % 64 == 0) && N >= 16)
        tl_linear_s8_avx512_few(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
    else
        tl_linear_s8_avx2(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
}
