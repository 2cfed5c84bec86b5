/* simd/linear_s8_avx2.h -- tinylm_linear_s8 with AVX2, after the activations are quantized (also
 * the AVX-512 variant's loop for the shapes its own loops do not take). Uses tl_dot_s8_1x8 (the AVX2
 * one, simd/dot_s8_avx2.h) and, for the last N % 8 columns, linear_s8.c's portable
 * tl_linear_s8_column.
 */
#include <immintrin.h>

/* Columns n0..n0+7 of y, for all rows, with the 8 lanes of a vector as the 8 columns: each lane
 * adds its groups in order, (x_scale * w_scale) * dot then +, exactly as the portable loop does.
 * The 8 weight scales of a group are gathered once per chunk of groups into a small table. */
#define TL_LINEAR_S8_CHUNK 64

static void tl_linear_s8_avx2_8cols(const int8_t *restrict x_q, const float *restrict x_scale,
                                    const int8_t *restrict w_q, const float *restrict w_scale,
                                    float *restrict y, size_t M, size_t N, size_t K, size_t group_size,
                                    size_t n0)
{
    size_t G = K / group_size, g0, g, m, j;
    float sw[TL_LINEAR_S8_CHUNK][8];                      /* sw[g][j] = w_scale[n0 + j, g0 + g] */
    for (g0 = 0; g0 < G; g0 += TL_LINEAR_S8_CHUNK) {
        size_t gc = G - g0 < TL_LINEAR_S8_CHUNK ? G - g0 : TL_LINEAR_S8_CHUNK;
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

/* 8 output columns at a time: 8 rows of w_q stay in cache while every row of x_q passes by */
static void tl_linear_s8_avx2(const int8_t *restrict x_q, const float *restrict x_scale,
                              const int8_t *restrict w_q, const float *restrict w_scale,
                              const float *restrict b, float *restrict y,
                              size_t M, size_t N, size_t K, size_t group_size)
{
    size_t m, n0, j;
    for (n0 = 0; n0 + 8 <= N; n0 += 8) {
        tl_linear_s8_avx2_8cols(x_q, x_scale, w_q, w_scale, y, M, N, K, group_size, n0);
        if (b)
            for (m = 0; m < M; m++)
                for (j = 0; j < 8; j++)
                    y[m * N + n0 + j] = y[m * N + n0 + j] + b[n0 + j];
    }
    for (; n0 < N; n0++)                          /* the last N % 8 columns, one at a time */
        tl_linear_s8_column(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size, n0);
}
