/* softmax.c -- softmax over the last axis: fp32 (optionally causal) and its backward, fp16 storage, and
 * an integer-only int8 version. Contract and error bounds: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "half.h"
#include "dot_f32.h"

/* ---- exp without libm -------------------------------------------------------------------------
 * e^x = 2^n * e^r with n = round(x / ln2) and r = x - n*ln2 in [-ln2/2, ln2/2]. ln2 is split in a
 * short high part (exact when multiplied by n) and a low part, so r keeps its precision (Cody-Waite).
 * e^r is a degree-6 polynomial, 1 + r + r^2 (c2 + c3 r + ... + c6 r^4), whose coefficients were
 * fitted to e^r on that interval for the least maximum relative error (weighted least squares,
 * Lawson's iteration, then rounded to float: kernels/tools/fit_exp_poly.py). Its own error, 3e-9,
 * is far below float rounding, so the error is the rounding of a dozen float operations (measured:
 * tinylm_kernels.h). It is as accurate as the degree-7 Taylor series and one multiplication and one
 * addition shorter (on a Cortex-M4F, 128 fewer instructions per 64-value softmax). 2^n is built from
 * its bits, in two halves so that n = 128 (x close to 88.7) still works. */
#define TL_LOG2E 1.44269504f
#define TL_LN2_HI 0.693359375f
#define TL_LN2_LO -2.12194440e-4f
#define TL_EXP_MIN -87.33f   /* below: e^x < 1.19e-38 would be subnormal; we return 0 */
#define TL_EXP_MAX 88.72f    /* above: e^x overflows float; we return inf */
#define TL_EXP_C6 1.381461276e-03f
#define TL_EXP_C5 8.368710056e-03f
#define TL_EXP_C4 4.166838899e-02f
#define TL_EXP_C3 1.666652113e-01f
#define TL_EXP_C2 4.999999404e-01f

static inline float tl_softmax_pow2i(int32_t n)            /* 2^n for -126 <= n <= 127 */
{
    return tl_bits_f32((uint32_t)(n + 127) << 23);
}

/* e^r for |r| <= ln2/2: the degree-6 polynomial, by Horner's rule */
static inline float tl_softmax_exp_poly(float r)
{
    float p = TL_EXP_C6;
    p = p * r + TL_EXP_C5;
    p = p * r + TL_EXP_C4;
    p = p * r + TL_EXP_C3;
    p = p * r + TL_EXP_C2;
    p = p * r + 1.0f;
    return p * r + 1.0f;
}

static inline float tl_softmax_exp(float x)
{
    float n, r;
    int32_t ni;
    if (x != x)
        return x;                                   /* NaN */
    if (x < TL_EXP_MIN)
        return 0.0f;                                /* includes -inf */
    if (x > TL_EXP_MAX)
        return tl_bits_f32(0x7f800000u);            /* +inf */
    n = tl_round_even(x * TL_LOG2E);                /* -126 .. 128 */
    r = (x - n * TL_LN2_HI) - n * TL_LN2_LO;
    ni = (int32_t)n;
    return (tl_softmax_exp_poly(r) * tl_softmax_pow2i(ni / 2)) * tl_softmax_pow2i(ni - ni / 2);
}

/* tl_softmax_exp for x <= 0 (or NaN): what a softmax needs, e^(x - max). Same bits as tl_softmax_exp, with less
 * work: no overflow test, and n = round(x / ln2) is in -126..0, so the result is p * 2^n in one
 * scaling -- tl_softmax_exp's two half scalings are both exact too (every product stays a normal float:
 * for n = -126, x >= TL_EXP_MIN makes r > 0, so p > 1), hence equal. One test sends NaN and the
 * underflow range off the common path. (On a Cortex-M4F: 64 values ~30% fewer instructions.) */
static inline float tl_softmax_exp_nonpos(float x)
{
    float n, r;
    if (!(x >= TL_EXP_MIN))
        return x != x ? x : 0.0f;                   /* NaN stays NaN; tiny and -inf give 0 */
    n = tl_round_even(x * TL_LOG2E);                /* -126 .. 0 */
    r = (x - n * TL_LN2_HI) - n * TL_LN2_LO;
    return tl_softmax_exp_poly(r) * tl_softmax_pow2i((int32_t)n);
}

#if defined(__AVX512F__)
#include "simd/softmax_avx512.h"
#endif
#if defined(__AVX2__)
#include "simd/softmax_avx2.h"
#endif

void tinylm_exp_f32(const float *restrict x, float *restrict y, size_t n)
{
#if defined(__AVX512F__)
    tl_exp_f32_avx512(x, y, n);
#elif defined(__AVX2__)
    tl_exp_f32_avx2(x, y, n);
#else
    size_t i;
    for (i = 0; i < n; i++)
        y[i] = tl_softmax_exp(x[i]);
#endif
}

/* ---- fp32 -----------------------------------------------------------------------------------
 * Per row: the max of the visible values, e = exp(x - max) and their sum, then e / sum; the rest of
 * the row (a causal mask) gets 0. */
void tinylm_softmax_f32(const float *restrict x, float *restrict y, size_t rows, size_t cols,
                        size_t causal_tq)
{
#if defined(__AVX512F__)
    tl_softmax_f32_avx512(x, y, rows, cols, causal_tq);
#elif defined(__AVX2__)
    tl_softmax_f32_avx2(x, y, rows, cols, causal_tq);
#else
    size_t r, j;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        /* query i of its (Tq, cols) matrix sees keys j <= i + (cols - Tq) */
        size_t visible = causal_tq ? (r % causal_tq) + (cols - causal_tq) + 1 : cols;
        float max = tl_bits_f32(0xff800000u), sum = 0.0f;  /* -inf; NaNs are skipped here but reach e */
        for (j = 0; j < visible; j++)
            if (xr[j] > max)
                max = xr[j];
        for (j = 0; j < visible; j++) {
            yr[j] = tl_softmax_exp_nonpos(xr[j] - max);
            sum += yr[j];
        }
        for (j = 0; j < visible; j++)
            yr[j] = yr[j] / sum;
        for (j = visible; j < cols; j++)
            yr[j] = 0.0f;
    }
#endif
}

/* The backward of the fp32 softmax: with y = softmax(x), dy_i/dx_j = y_i (delta_ij - y_j), so
 * dx = y (dy - sum(dy y)), times the scale a scaled softmax (attention) multiplied its input by. Masked
 * entries of a causal row have y = 0, hence dx = 0: they are written, not read. */
void tinylm_softmax_backward_f32(const float *restrict y, const float *restrict dy, float *restrict dx,
                                 size_t rows, size_t cols, size_t causal_tq, float scale)
{
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        const size_t visible = causal_tq ? (r % causal_tq) + (cols - causal_tq) + 1 : cols;
        const float s = tl_dot_f32(dyr, yr, visible);
        size_t j;
        for (j = 0; j < visible; j++)
            dxr[j] = ((dyr[j] - s) * yr[j]) * scale;
        for (j = visible; j < cols; j++)
            dxr[j] = 0.0f;
    }
}

/* ---- fp16 storage, fp32 math ------------------------------------------------------------------
 * No buffer for the fp32 row (no malloc, and the row can be long): three passes, e^(x - max) is
 * computed twice instead of being stored. */
void tinylm_softmax_f16(const uint16_t *restrict x, uint16_t *restrict y, size_t rows, size_t cols)
{
#if defined(__AVX2__) && defined(__F16C__)
    tl_softmax_f16_avx2(x, y, rows, cols);
#else
    size_t r, j;
    for (r = 0; r < rows; r++) {
        const uint16_t *xr = x + r * cols;
        uint16_t *yr = y + r * cols;
        float max = tl_bits_f32(0xff800000u), sum = 0.0f;
        for (j = 0; j < cols; j++) {
            float v = tl_f16_to_f32(xr[j]);
            if (v > max)
                max = v;
        }
        for (j = 0; j < cols; j++)
            sum += tl_softmax_exp_nonpos(tl_f16_to_f32(xr[j]) - max);
        for (j = 0; j < cols; j++)
            yr[j] = tl_f32_to_f16(tl_softmax_exp_nonpos(tl_f16_to_f32(xr[j]) - max) / sum);
    }
#endif
}

/* ---- int8 in, Q0.8 out, integers only ---------------------------------------------------------
 * The real logits are x * scale; e^(scale * (x_i - max)) only takes 256 values, one per difference
 * d = max - x_i in 0..255, so the caller precomputes them once per scale in Q2.30 (exp_table). */
void tinylm_softmax_s8(const int8_t *restrict x, uint8_t *restrict y, size_t rows, size_t cols,
                       const uint32_t *restrict exp_table)
{
    size_t r, j;
    for (r = 0; r < rows; r++) {
        const int8_t *xr = x + r * cols;
        uint8_t *yr = y + r * cols;
        int32_t max = -128;
        uint64_t sum = 0;
        for (j = 0; j < cols; j++)
            if (xr[j] > max)
                max = xr[j];
        for (j = 0; j < cols; j++)
            sum += exp_table[max - xr[j]];
        for (j = 0; j < cols; j++) {
            /* round(e * 256 / sum), halves up; saturate 256 (p = 1.0) to 255 */
            uint64_t p = ((uint64_t)exp_table[max - xr[j]] * 256u + sum / 2u) / sum;
            yr[j] = (uint8_t)(p > 255u ? 255u : p);
        }
    }
}
