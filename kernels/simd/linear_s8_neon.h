/* simd/linear_s8_neon.h -- tinylm_linear_s8 with AArch64 NEON, after the activations are quantized.
 * Uses tl_dot_s8_1x8 (the NEON one, simd/dot_s8_neon.h: SDOT where the build has the dot-product
 * extension) and, for the last N % 8 columns, linear_s8.c's portable tl_linear_s8_column.
 *
 * FMUL and FADD separately, never FMLA: the contract's order is (x_scale * w_scale) * dot then +, each
 * rounded. (GCC writes vmulq_f32 / vaddq_f32 as plain * and +, so this relies on -ffp-contract=off,
 * which -std=c99 and kernels/build.py both set.)
 */
#include <arm_neon.h>

/* Columns n0..n0+7 of y, for all rows, with the 4 + 4 lanes of two vectors as the 8 columns: each
 * lane adds its groups in order, exactly as the portable loop does. The 8 weight scales of a group
 * are gathered once per chunk of groups into a small table. */
#define TL_LINEAR_S8_NEON_CHUNK 64

static void tl_linear_s8_neon_8cols(const int8_t *restrict x_q, const float *restrict x_scale,
                                    const int8_t *restrict w_q, const float *restrict w_scale,
                                    float *restrict y, size_t M, size_t N, size_t K, size_t group_size,
                                    size_t n0)
{
    size_t G = K / group_size, g0, g, m, j;
    float sw[TL_LINEAR_S8_NEON_CHUNK][8];                 /* sw[g][j] = w_scale[n0 + j, g0 + g] */
    for (g0 = 0; g0 < G; g0 += TL_LINEAR_S8_NEON_CHUNK) {
        size_t gc = G - g0 < TL_LINEAR_S8_NEON_CHUNK ? G - g0 : TL_LINEAR_S8_NEON_CHUNK;
        for (g = 0; g < gc; g++)
            for (j = 0; j < 8; j++)
                sw[g][j] = w_scale[(n0 + j) * G + g0 + g];
        for (m = 0; m < M; m++) {
            /* the running sums of earlier chunks wait in y (a float32 store and load: exact) */
            float32x4_t acc0 = g0 ? vld1q_f32(y + m * N + n0) : vdupq_n_f32(0.0f);
            float32x4_t acc1 = g0 ? vld1q_f32(y + m * N + n0 + 4) : vdupq_n_f32(0.0f);
            for (g = 0; g < gc; g++) {
                int32_t dot[8];
                float32x4_t sx = vdupq_n_f32(x_scale[m * G + g0 + g]);
                tl_dot_s8_1x8(x_q + m * K + (g0 + g) * group_size, w_q + n0 * K + (g0 + g) * group_size,
                              K, group_size, dot);
                acc0 = vaddq_f32(acc0, vmulq_f32(vmulq_f32(sx, vld1q_f32(sw[g])),
                                                 vcvtq_f32_s32(vld1q_s32(dot))));
                acc1 = vaddq_f32(acc1, vmulq_f32(vmulq_f32(sx, vld1q_f32(sw[g] + 4)),
                                                 vcvtq_f32_s32(vld1q_s32(dot + 4))));
            }
            vst1q_f32(y + m * N + n0, acc0);
            vst1q_f32(y + m * N + n0 + 4, acc1);
        }
    }
}

/* 8 output columns at a time: 8 rows of w_q stay in cache while every row of x_q passes by */
static void tl_linear_s8_neon(const int8_t *restrict x_q, const float *restrict x_scale,
                              const int8_t *restrict w_q, const float *restrict w_scale,
                              const float *restrict b, float *restrict y,
                              size_t M, size_t N, size_t K, size_t group_size)
{
    size_t m, n0, j;
    for (n0 = 0; n0 + 8 <= N; n0 += 8) {
        tl_linear_s8_neon_8cols(x_q, x_scale, w_q, w_scale, y, M, N, K, group_size, n0);
        if (b)
            for (m = 0; m < M; m++)
                for (j = 0; j < 8; j++)
                    y[m * N + n0 + j] = y[m * N + n0 + j] + b[n0 + j];
    }
    for (; n0 < N; n0++)                          /* the last N % 8 columns, one at a time */
        tl_linear_s8_column(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size, n0);
}
