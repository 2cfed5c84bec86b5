/* simd/matmul_neon.h -- the AArch64 NEON matmul, written once for fp32 and fp16 storage: the body of
 * simd/matmul_f32_neon.h and simd/matmul_f16_neon.h.
 *
 * A template: the including file defines
 *     TL_T          the element type of x and w (float, or uint16_t holding binary16)
 *     TL_LOAD4(p)   an expression loading 4 consecutive elements at p as a float32x4_t
 *     TL_SCALAR(v)  one element as a float
 *     TL_NAME       the name of the function to define (tl_matmul_<storage>_neon); its helpers are
 *                   TL_NAME followed by _<what>
 *
 * y (M, N) = x (M, K) @ w (N, K).T (+ b), fp32 math, dot products read along K as stored, 4 lanes of
 * partial sums per output, multiplied and added with FMLA (vfmaq_f32: one rounding per step instead
 * of two). Like the x86 SIMD paths, so not bit-exact with the portable loop: the contract's error
 * bound (tinylm_kernels.h) allows both the fused multiply-adds and the changed order of the sum.
 *   4 rows of x or more: a 4 x 4 tile of y per step (4 rows of x against 4 rows of w, 16
 *     accumulators: 8 loads of 4 values serve 16 FMAs); the last M % 4 rows of x one at a time
 *     against 4 rows of w (a token at a time: w is streamed once, 4 rows per pass).
 *   Rows of w past N reuse the last valid row (those results are not stored).
 *   The last K % 4 values of a dot product are added in plain C after the lanes are summed.
 * The bias is added last.
 */
#include <arm_neon.h>

#ifndef TL_CAT
#define TL_CAT_(a, b) a##b
#define TL_CAT(a, b) TL_CAT_(a, b)     /* TL_CAT(name, _4x4) -> name_4x4 */
#endif

/* sum of x[k] * w[k] for k in [k0, K): the tail of a dot product, in plain C */
static inline float TL_CAT(TL_NAME, _tail)(const TL_T *x, const TL_T *w, size_t k0, size_t K)
{
    float s = 0.0f;
    size_t k;
    for (k = k0; k < K; k++)
        s += TL_SCALAR(x[k]) * TL_SCALAR(w[k]);
    return s;
}

/* out[i][j] = x_i . w_j over K values, for the 4 rows x_i and the 4 rows w_j */
static inline void TL_CAT(TL_NAME, _4x4)(const TL_T *const xr[4], const TL_T *const wr[4], size_t K,
                                         float out[4][4])
{
    float32x4_t c[4][4];
    size_t i, j, k;
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++)
            c[i][j] = vdupq_n_f32(0.0f);
    for (k = 0; k + 4 <= K; k += 4) {
        float32x4_t a[4], b[4];
        for (i = 0; i < 4; i++) {
            a[i] = TL_LOAD4(xr[i] + k);
            b[i] = TL_LOAD4(wr[i] + k);
        }
        for (i = 0; i < 4; i++)
            for (j = 0; j < 4; j++)
                c[i][j] = vfmaq_f32(c[i][j], a[i], b[j]);
    }
    for (i = 0; i < 4; i++) {                      /* lane j = the sum of c[i][j]'s 4 lanes */
        vst1q_f32(out[i], vpaddq_f32(vpaddq_f32(c[i][0], c[i][1]), vpaddq_f32(c[i][2], c[i][3])));
        if (k < K)
            for (j = 0; j < 4; j++)
                out[i][j] += TL_CAT(TL_NAME, _tail)(xr[i], wr[j], k, K);
    }
}

/* out[j] = x . w_j over K values, for one row x and the 4 rows w_j */
static inline void TL_CAT(TL_NAME, _1x4)(const TL_T *x, const TL_T *const wr[4], size_t K, float out[4])
{
    float32x4_t c0 = vdupq_n_f32(0.0f), c1 = c0, c2 = c0, c3 = c0;
    size_t j, k;
    for (k = 0; k + 4 <= K; k += 4) {
        float32x4_t a = TL_LOAD4(x + k);
        c0 = vfmaq_f32(c0, a, TL_LOAD4(wr[0] + k));
        c1 = vfmaq_f32(c1, a, TL_LOAD4(wr[1] + k));
        c2 = vfmaq_f32(c2, a, TL_LOAD4(wr[2] + k));
        c3 = vfmaq_f32(c3, a, TL_LOAD4(wr[3] + k));
    }
    vst1q_f32(out, vpaddq_f32(vpaddq_f32(c0, c1), vpaddq_f32(c2, c3)));
    if (k < K)
        for (j = 0; j < 4; j++)
            out[j] += TL_CAT(TL_NAME, _tail)(x, wr[j], k, K);
}

static void TL_NAME(const TL_T *restrict x, const TL_T *restrict w, const float *restrict b,
                    float *restrict y, size_t M, size_t N, size_t K)
{
    size_t m0, n0, i, j;
    /* 4 rows of w (4 * K elements) stay in cache while every row of x passes by */
    for (n0 = 0; n0 < N; n0 += 4) {
        const TL_T *wr[4];
        float out[4][4];
        for (j = 0; j < 4; j++)
            wr[j] = w + (n0 + j < N ? n0 + j : N - 1) * K;
        for (m0 = 0; m0 + 4 <= M; m0 += 4) {
            const TL_T *xr[4];
            for (i = 0; i < 4; i++)
                xr[i] = x + (m0 + i) * K;
            TL_CAT(TL_NAME, _4x4)(xr, wr, K, out);
            for (i = 0; i < 4; i++)
                for (j = 0; j < 4 && n0 + j < N; j++)
                    y[(m0 + i) * N + n0 + j] = b ? out[i][j] + b[n0 + j] : out[i][j];
        }
        for (; m0 < M; m0++) {                     /* the last M % 4 rows */
            TL_CAT(TL_NAME, _1x4)(x + m0 * K, wr, K, out[0]);
            for (j = 0; j < 4 && n0 + j < N; j++)
                y[m0 * N + n0 + j] = b ? out[0][j] + b[n0 + j] : out[0][j];
        }
    }
}
