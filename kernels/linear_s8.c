/* linear_s8.c -- the int8 Linear layer: quantize the activations, int32 dots per group, float
 * accumulation across groups. Exact (see the order of operations in tinylm_kernels.h). */
#include "tinylm_kernels.h"
#include "dot_s8.h"

/* Columns n0 .. N-1 of y, portably: 8 at a time (tl_dot_s8_1x8 is the AVX2, Helium or DSP loop
 * where the build has one), then the last N % 8 one at a time. Each output adds its groups in
 * order, acc = acc + (x_scale * w_scale) * (float)dot, then the bias: the contract's order. */
static void tl_linear_s8_columns(const int8_t *restrict x_q, const float *restrict x_scale,
                                 const int8_t *restrict w_q, const float *restrict w_scale,
                                 const float *restrict b, float *restrict y,
                                 size_t M, size_t N, size_t K, size_t group_size, size_t n0)
{
    size_t G = K / group_size, m, g, j;
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

#if TL_S8_AVX512
#include "simd/dot_s8_avx512.h"
#include "simd/gemm_s8_avx512.h"
#include "simd/linear_s8_avx2.h"
#include "simd/linear_s8_avx512.h"
#elif defined(__AVX2__)
#include "simd/linear_s8_avx2.h"
#endif

void tinylm_linear_s8(const float *restrict x, const int8_t *restrict w_q,
                      const float *restrict w_scale, const float *restrict b, float *restrict y,
                      int8_t *restrict x_q, float *restrict x_scale,
                      size_t M, size_t N, size_t K, size_t group_size)
{
    tinylm_quantize_s8(x, x_q, x_scale, M, K, group_size);   /* x_q (M, K), x_scale (M, G) */
#if TL_S8_AVX512
    tl_linear_s8_avx512(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
#elif defined(__AVX2__)
    tl_linear_s8_avx2(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
#else
    tl_linear_s8_columns(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size, 0);
#endif
}
