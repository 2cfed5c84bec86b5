/* linear_s8.c -- the int8 Linear layer: quantize the activations, int32 dots per group, float
 * accumulation across groups. Exact (see the order of operations in tinylm_kernels.h). */
#include "tinylm_kernels.h"
#include "dot_s8.h"

/* Column n of y for every row, portably: each output adds its groups in order,
 * acc = acc + (x_scale * w_scale) * (float)dot, then the bias (the contract's order). The last
 * N % 8 columns of every variant but the AVX-512 ones. */
static void tl_linear_s8_column(const int8_t *restrict x_q, const float *restrict x_scale,
                                const int8_t *restrict w_q, const float *restrict w_scale,
                                const float *restrict b, float *restrict y,
                                size_t M, size_t N, size_t K, size_t group_size, size_t n)
{
    size_t G = K / group_size, m, g;
    for (m = 0; m < M; m++) {
        float acc = 0.0f;
        for (g = 0; g < G; g++) {
            int32_t dot = tl_dot_s8(x_q + m * K + g * group_size, w_q + n * K + g * group_size,
                                    group_size);
            acc = acc + (x_scale[m * G + g] * w_scale[n * G + g]) * (float)dot;
        }
        y[m * N + n] = b ? acc + b[n] : acc;
    }
}

#if TL_S8_AVX512
#include "simd/dot_s8_avx512.h"
#include "simd/gemm_s8_avx512.h"
#include "simd/linear_s8_avx2.h"
#include "simd/linear_s8_avx512.h"
#if TL_S8_AMX
#include "simd/gemm_s8_amx.h"
#include "simd/linear_s8_amx.h"
#endif
#elif defined(__AVX2__)
#include "simd/linear_s8_avx2.h"
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include "simd/linear_s8_neon.h"
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
#elif defined(__aarch64__) && defined(__ARM_NEON)
    tl_linear_s8_neon(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
#else
    /* 8 output columns at a time (tl_dot_s8_1x8 is the Helium or DSP loop where the build has one):
     * 8 rows of w_q stay in cache while every row of x_q passes by */
    size_t G = K / group_size, m, n0, g, j;
    for (n0 = 0; n0 + 8 <= N; n0 += 8) {
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
    for (; n0 < N; n0++)                          /* the last N % 8 columns, one at a time */
        tl_linear_s8_column(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size, n0);
#endif
}

/* The same on AMX tiles where the build has them (the caller has the OS's permission for them). */
void tinylm_linear_s8_amx(const float *restrict x, const int8_t *restrict w_q,
                          const float *restrict w_scale, const float *restrict b, float *restrict y,
                          int8_t *restrict x_q, float *restrict x_scale,
                          size_t M, size_t N, size_t K, size_t group_size)
{
#if TL_S8_AMX
    tinylm_quantize_s8(x, x_q, x_scale, M, K, group_size);   /* x_q (M, K), x_scale (M, G) */
    tl_linear_s8_amx(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
#else
    tinylm_linear_s8(x, w_q, w_scale, b, y, x_q, x_scale, M, N, K, group_size);
#endif
}
