/* linear_s8.c -- the int8 Linear layer: quantize the activations, int32 dots per group, float
 * accumulation across groups. Exact (see the order of operations in tinylm_kernels.h). */
#include "tinylm_kernels.h"
#include "dot_s8.h"

#if TL_S8_AVX512
#include "gemm_s8_avx512.h"

/* The packed AVX-512 VNNI path (gemm_s8_avx512.h): panels of 32 rows of w_q, up to
 * TL_S8_MAX_GROUPS groups at a time, and a 6 x 32 tile of y per step. After each group's exact
 * int32 dots, each lane (one output) adds (x_scale * w_scale) * (float)dot to its running sum, in
 * group order, as the portable loop does. The sums of earlier panels' groups wait in y (a float
 * store and load: exact); the bias is added after the last group. */
static void tl_linear_s8_avx512(const int8_t *restrict x_q, const float *restrict x_scale,
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
        lanes[0] = tl_lanes16(nr);
        lanes[1] = tl_lanes16(nr > 16 ? nr - 16 : 0);
        for (g0 = 0; g0 < G; g0 += per_panel) {
            size_t ng = G - g0 < per_panel ? G - g0 : per_panel;
            int last = g0 + ng == G;
            tl_s8_pack(w_q + n0 * K + g0 * group_size, K, nr, group_size, ng, wp);
            for (g = 0; g < ng; g++)
                for (j = 0; j < TL_S8_NR; j++)
                    sw[g][j] = j < nr ? w_scale[(n0 + j) * G + g0 + g] : 0.0f;
            for (m = 0; m < M; m += TL_S8_MR) {
                size_t mr = M - m < TL_S8_MR ? M - m : TL_S8_MR;
                const int8_t *xr[TL_S8_MR];
                const float *sx[TL_S8_MR];
                __m512 acc[TL_S8_MR][2];
                tl_s8_rows(x_q, M, K, m, g0 * group_size, ng * group_size, group_size, pad, xr);
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
                    tl_s8_tile(xg, group_size, wp + g * gw, c);
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

/* One group per row (per-channel scales, any K): the int32 dots of tl_matmul_s8_avx512 go into
 * y's memory first (as int32, through vector loads and stores only), then each becomes, in place,
 * y = (0 + (x_scale * w_scale) * (float)dot) + b: the portable loop's operations for G = 1. */
static void tl_linear_s8_channel_avx512(const int8_t *restrict x_q, const float *restrict x_scale,
                                        const int8_t *restrict w_q, const float *restrict w_scale,
                                        const float *restrict b, float *restrict y,
                                        size_t M, size_t N, size_t K)
{
    size_t m, n0;
    tl_matmul_s8_avx512(x_q, w_q, (int32_t *)(void *)y, M, N, K);
    for (m = 0; m < M; m++) {
        const __m512 sx = _mm512_set1_ps(x_scale[m]);
        for (n0 = 0; n0 < N; n0 += 16) {
            __mmask16 live = tl_lanes16(N - n0);
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

/* Few rows of x (a token at a time): 16 rows of w_q at a time read as stored (dot_s8.h), for
 * group sizes of 32 (two groups per 64-column load) or a multiple of 64, and N >= 16. Lane j of
 * every vector is output column n0 + j; the last block of 16 overlaps the one before it (those
 * outputs are computed twice, the same bits). The weight scales of up to 64 groups are transposed
 * into sw first; as in the AVX2 path, the running sums of earlier chunks of groups wait in y
 * (exact). The same order of float operations per output as the portable loop. */
static void tl_linear_s8_few_avx512(const int8_t *restrict x_q, const float *restrict x_scale,
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
                tl_transpose16(cols, 4 * (gc - g < 16 ? gc - g : 16), t);
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
                        tl_dot_s8_1x16_avx512(xr + k, wb + k, K, 64, &lo, &hi);
                        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(sx[g]), sw[g]),
                                                               _mm512_cvtepi32_ps(lo)));
                        g++;
                        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(sx[g]), sw[g]),
                                                               _mm512_cvtepi32_ps(hi)));
                    } else {
                        tl_dot_s8_1x16_avx512(xr + k, wb + k, K, group_size, &lo, &hi);
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
#endif

#if defined(__AVX2__)
#include <immintrin.h>

/* Columns n0..n0+7 of y, for all rows, with the 8 lanes of a vector as the 8 columns: each lane
 * adds its groups in order, (x_scale * w_scale) * dot then +, exactly as the portable loop does.
 * The 8 weight scales of a group are gathered once per chunk of groups into a small table. */
#define TL_GROUP_CHUNK 64

static void linear_s8_8cols_avx2(const int8_t *restrict x_q, const float *restrict x_scale,
                                 const int8_t *restrict w_q, const float *restrict w_scale,
                                 float *restrict y, size_t M, size_t N, size_t K, size_t group_size,
                                 size_t n0)
{
    size_t G = K / group_size, g0, g, m, j;
    float sw[TL_GROUP_CHUNK][8];                      /* sw[g][j] = w_scale[n0 + j, g0 + g] */
    for (g0 = 0; g0 < G; g0 += TL_GROUP_CHUNK) {
        size_t gc = G - g0 < TL_GROUP_CHUNK ? G - g0 : TL_GROUP_CHUNK;
        for (g = 0; g < gc; g++)
            for (j = 0; j < 8; j++)
                sw[g][j] = w_scale[(n0 + j) * G + g0 + g];
        for (m = 0; m < M; m++) {
            /* the running sums of earlier chunks wait in y (a float32 store and load: exact) */
            __m256 acc = g0 ? _mm256_loadu_ps(y + m * N + n0) : _mm256_setzero_ps();
            for (g = 0; g < gc; g++) {
                int32_t dot[8];
                __m256 scale;
                tl_dot_s8_1x8(x_q + m * K + (g0 + g) * group_size, w_q + n0 * K + (g0 + g) * group_size,
                              K, group_size, dot);
                scale = _mm256_mul_ps(_mm256_set1_ps(x_scale[m * G + g0 + g]), _mm256_loadu_ps(sw[g]));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(scale,
                                    _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)dot))));
            }
            _mm256_storeu_ps(y + m * N + n0, acc);
        }
    }
}
#endif

void tinylm_linear_s8(const float *restrict x, const int8_t *restrict w_q,
                      const float *restrict w_scale, const float *restrict b, float *restrict y,
                      int8_t *restrict x_q, float *restrict x_scale,
                      size_t M, size_t N, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, n0 = 0, g, j;

    tinylm_quantize_s8(x, x_q, x_scale, M, K, group_size);   /* x_q (M, K), x_scale (M, G) */

#if TL_S8_AVX512
    /* AVX-512 VNNI: 6 rows of x or more take packed panels of w (one scale per row: through the
     * int32 matmul); fewer take 1 x 16 dots on w as stored; other shapes go on to the AVX2 loop */
    if (M >= TL_S8_MR && K >= 4 && G == 1) {         /* (K >= 4: see tl_s8_rows) */
        tl_linear_s8_channel_avx512(x_q, x_scale, w_q, w_scale, b, y, M, N, K);
        return;
    }
    if (M >= TL_S8_MR && K >= 4 && TL_S8_GROUP_WORDS(group_size) <= TL_S8_PANEL_WORDS) {
        tl_linear_s8_avx512(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
        return;
    }
    if ((group_size == 32 || group_size % 64 == 0) && N >= 16) {
        tl_linear_s8_few_avx512(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
        return;
    }
#endif
    /* 8 output columns at a time: 8 rows of w_q stay in cache while every row of x_q passes by */
#if defined(__AVX2__)
    for (; n0 + 8 <= N; n0 += 8) {
        linear_s8_8cols_avx2(x_q, x_scale, w_q, w_scale, y, M, N, K, group_size, n0);
        if (b)
            for (m = 0; m < M; m++)
                for (j = 0; j < 8; j++)
                    y[m * N + n0 + j] = y[m * N + n0 + j] + b[n0 + j];
    }
#endif
    for (; n0 + 8 <= N; n0 += 8) {
        for (m = 0; m < M; m++) {
            float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            for (g = 0; g < G; g++) {
                int32_t dot[8];
                float sx = x_scale[m * G + g];
                tl_dot_s8_1x8(x_q + m * K + g * group_size, w_q + n0 * K + g * group_size, K,
                              group_size, dot);
                for (j = 0; j < 8; j++)
                    acc[j] = acc[j] + (sx * w_scale[(n0 + j) * G + g]) * (float)dot[j];
            }
            for (j = 0; j < 8; j++)
                y[m * N + n0 + j] = b ? acc[j] + b[n0 + j] : acc[j];
        }
    }
    for (; n0 < N; n0++) {                        /* the last N % 8 columns, one at a time */
        for (m = 0; m < M; m++) {
            float acc = 0.0f;
            for (g = 0; g < G; g++) {
                int32_t dot = tl_dot_s8(x_q + m * K + g * group_size, w_q + n0 * K + g * group_size,
                                        group_size);
                acc = acc + (x_scale[m * G + g] * w_scale[n0 * G + g]) * (float)dot;
            }
            y[m * N + n0] = b ? acc + b[n0] : acc;
        }
    }
}
