/* softmax.c -- softmax over the last axis: fp32 (optionally causal), fp16 storage, and an
 * integer-only int8 version. Contract and error bounds: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "half.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

static inline float tl_pow2i(int32_t n)            /* 2^n for -126 <= n <= 127 */
{
    return tl_bits_f32((uint32_t)(n + 127) << 23);
}

/* e^r for |r| <= ln2/2: the degree-6 polynomial, by Horner's rule */
static inline float tl_exp_poly(float r)
{
    float p = TL_EXP_C6;
    p = p * r + TL_EXP_C5;
    p = p * r + TL_EXP_C4;
    p = p * r + TL_EXP_C3;
    p = p * r + TL_EXP_C2;
    p = p * r + 1.0f;
    return p * r + 1.0f;
}

static inline float tl_exp(float x)
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
    return (tl_exp_poly(r) * tl_pow2i(ni / 2)) * tl_pow2i(ni - ni / 2);
}

/* tl_exp for x <= 0 (or NaN): what a softmax needs, e^(x - max). Same bits as tl_exp, with less
 * work: no overflow test, and n = round(x / ln2) is in -126..0, so the result is p * 2^n in one
 * scaling -- tl_exp's two half scalings are both exact too (every product stays a normal float:
 * for n = -126, x >= TL_EXP_MIN makes r > 0, so p > 1), hence equal. One test sends NaN and the
 * underflow range off the common path. (On a Cortex-M4F: 64 values ~30% fewer instructions.) */
static inline float tl_exp_nonpos(float x)
{
    float n, r;
    if (!(x >= TL_EXP_MIN))
        return x != x ? x : 0.0f;                   /* NaN stays NaN; tiny and -inf give 0 */
    n = tl_round_even(x * TL_LOG2E);                /* -126 .. 0 */
    r = (x - n * TL_LN2_HI) - n * TL_LN2_LO;
    return tl_exp_poly(r) * tl_pow2i((int32_t)n);
}

#if defined(__AVX2__)
/* The same algorithm, 8 lanes at a time, the same operations in the same order (no FMA), so it
 * returns the same bits as tl_exp. */
static inline __m256 tl_exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(TL_EXP_MIN), hi = _mm256_set1_ps(TL_EXP_MAX);
    __m256 nan_mask = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 zero_mask = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 inf_mask = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);     /* NaN lanes become lo; fixed below */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(TL_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(TL_LN2_HI))),
                             _mm256_mul_ps(n, _mm256_set1_ps(TL_LN2_LO)));
    __m256 p = _mm256_set1_ps(TL_EXP_C6);
    __m256i ni, n1, n2;
    __m256 result;
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TL_EXP_C5));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TL_EXP_C4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TL_EXP_C3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TL_EXP_C2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    ni = _mm256_cvtps_epi32(n);
    /* n / 2 truncated toward zero, like C's integer division in tl_exp */
    n1 = _mm256_srai_epi32(_mm256_add_epi32(ni, _mm256_srli_epi32(ni, 31)), 1);
    n2 = _mm256_sub_epi32(ni, n1);
    n1 = _mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23);
    n2 = _mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23);
    result = _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(n1)), _mm256_castsi256_ps(n2));
    result = _mm256_andnot_ps(zero_mask, result);
    result = _mm256_blendv_ps(result, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)), inf_mask);
    return _mm256_blendv_ps(result, x, nan_mask);
}
#endif

#if defined(__AVX512F__)
/* The same algorithm, 16 lanes at a time, the same operations in the same order (no FMA) up to
 * the polynomial p. The last step differs in form, not in value: tl_exp multiplies p by 2^(n/2)
 * and then by 2^(n - n/2) (two halves, so that n = 128 works); VSCALEFPS multiplies by 2^n in one
 * step. For every x in [TL_EXP_MIN, TL_EXP_MAX], p * 2^n is a normal float (1.2e-38 .. 3.4e38), so
 * each of those multiplications by a power of two is exact and both give the same bits. Lanes not
 * in `keep` are 0; what the polynomial computes for x outside the range is never used. */
static inline __m512 tl_exp16_in_range(__m512 x, __mmask16 keep)
{
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(TL_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(TL_LN2_HI))),
                             _mm512_mul_ps(n, _mm512_set1_ps(TL_LN2_LO)));
    __m512 p = _mm512_set1_ps(TL_EXP_C6);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TL_EXP_C5));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TL_EXP_C4));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TL_EXP_C3));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TL_EXP_C2));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

/* tl_exp, 16 lanes: tl_exp's early returns (NaN, x < TL_EXP_MIN, x > TL_EXP_MAX) become masks */
static inline __m512 tl_exp16(__m512 x)
{
    __mmask16 nan_mask = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __mmask16 zero_mask = _mm512_cmp_ps_mask(x, _mm512_set1_ps(TL_EXP_MIN), _CMP_LT_OQ);
    __mmask16 inf_mask = _mm512_cmp_ps_mask(x, _mm512_set1_ps(TL_EXP_MAX), _CMP_GT_OQ);
    __m512 result = tl_exp16_in_range(x, (__mmask16)~zero_mask);             /* x < TL_EXP_MIN: 0 */
    result = _mm512_mask_mov_ps(result, inf_mask, _mm512_castsi512_ps(_mm512_set1_epi32(0x7f800000)));
    return _mm512_mask_mov_ps(result, nan_mask, x);
}

/* tl_exp_nonpos, 16 lanes: for x <= 0 or NaN (e^(x - max) in a softmax) there is no overflow lane,
 * so one compare and one mask fewer. The same bits. */
static inline __m512 tl_exp16_nonpos(__m512 x)
{
    __mmask16 nan_mask = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __mmask16 ok_mask = _mm512_cmp_ps_mask(x, _mm512_set1_ps(TL_EXP_MIN), _CMP_GE_OQ);  /* not NaN */
    return _mm512_mask_mov_ps(tl_exp16_in_range(x, ok_mask), nan_mask, x);
}
#endif

void tinylm_exp_f32(const float *restrict x, float *restrict y, size_t n)
{
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, tl_exp16(_mm512_loadu_ps(x + i)));
#endif
#if defined(__AVX2__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, tl_exp8(_mm256_loadu_ps(x + i)));
#endif
    for (; i < n; i++)
        y[i] = tl_exp(x[i]);
}

/* ---- fp32 ----------------------------------------------------------------------------------- */

#if defined(__AVX512F__)
/* softmax_row_f32 (below) 16 values at a time: the same three passes over the row (it is in L1:
 * 16 KB for 4096 values), the last partial vector of each pass through a lane mask. While the
 * exponentials are computed, the row `next` is fetched into the cache, a line per vector: the
 * next row's first pass then does not wait for memory. */
static void softmax_row_f32_avx512(const float *restrict x, float *restrict y, size_t cols,
                                   size_t visible, const float *next)
{
    const __m512 neg_inf = _mm512_castsi512_ps(_mm512_set1_epi32((int32_t)0xff800000u));
    size_t j, n16 = visible - visible % 16;
    __mmask16 tail = (__mmask16)((1u << (visible % 16)) - 1u);
    __m512 vmax = neg_inf, vsum = _mm512_setzero_ps(), vs;
    float max;
    for (j = 0; j < n16; j += 16)                 /* (a NaN may win here or not: the row is NaN) */
        vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + j));
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(neg_inf, tail, x + n16));
    max = _mm512_reduce_max_ps(vmax);
    vmax = _mm512_set1_ps(max);
    for (j = 0; j < n16; j += 16) {
        __m512 e;
        _mm_prefetch((const char *)(next + j), _MM_HINT_T0);
        e = tl_exp16_nonpos(_mm512_sub_ps(_mm512_loadu_ps(x + j), vmax));
        _mm512_storeu_ps(y + j, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    if (tail) {                                   /* lanes past `visible` add exactly 0 */
        __m512 e = tl_exp16_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + n16), vmax));
        e = _mm512_maskz_mov_ps(tail, e);
        _mm512_mask_storeu_ps(y + n16, tail, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    vs = _mm512_set1_ps(_mm512_reduce_add_ps(vsum));
    for (j = 0; j < n16; j += 16)
        _mm512_storeu_ps(y + j, _mm512_div_ps(_mm512_loadu_ps(y + j), vs));
    if (tail)
        _mm512_mask_storeu_ps(y + n16, tail, _mm512_div_ps(_mm512_maskz_loadu_ps(tail, y + n16), vs));
    for (j = visible; j < cols; j++)
        y[j] = 0.0f;
}
#endif

/* softmax of the first `visible` values of one row; the rest of the row (a causal mask) gets 0. */
static void softmax_row_f32(const float *restrict x, float *restrict y, size_t cols, size_t visible)
{
    float max = tl_bits_f32(0xff800000u);           /* -inf; NaNs are skipped here but reach e */
    float sum = 0.0f;
    size_t j = 0;
#if defined(__AVX2__)
    if (visible >= 8) {                             /* (a NaN may win here: the row is NaN anyway) */
        __m256 vmax = _mm256_loadu_ps(x);
        float lanes[8];
        for (j = 8; j + 8 <= visible; j += 8)
            vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + j));
        _mm256_storeu_ps(lanes, vmax);
        for (j = 0; j < 8; j++)
            if (!(lanes[j] <= max))
                max = lanes[j];
        j = visible - visible % 8;
    }
#endif
    for (; j < visible; j++)
        if (x[j] > max)
            max = x[j];
    j = 0;
#if defined(__AVX2__)
    {
        __m256 vmax = _mm256_set1_ps(max), vsum = _mm256_setzero_ps();
        float lanes[8];
        for (; j + 8 <= visible; j += 8) {
            __m256 e = tl_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmax));
            _mm256_storeu_ps(y + j, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        _mm256_storeu_ps(lanes, vsum);
        sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
              ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    }
#endif
    for (; j < visible; j++) {
        y[j] = tl_exp_nonpos(x[j] - max);
        sum += y[j];
    }
    j = 0;
#if defined(__AVX2__)
    {
        __m256 vsum = _mm256_set1_ps(sum);
        for (; j + 8 <= visible; j += 8)
            _mm256_storeu_ps(y + j, _mm256_div_ps(_mm256_loadu_ps(y + j), vsum));
    }
#endif
    for (; j < visible; j++)
        y[j] = y[j] / sum;
    for (j = visible; j < cols; j++)
        y[j] = 0.0f;
}

void tinylm_softmax_f32(const float *restrict x, float *restrict y, size_t rows, size_t cols,
                        size_t causal_tq)
{
    size_t r;
    for (r = 0; r < rows; r++) {
        /* query i of its (Tq, cols) matrix sees keys j <= i + (cols - Tq) */
        size_t visible = causal_tq ? (r % causal_tq) + (cols - causal_tq) + 1 : cols;
#if defined(__AVX512F__)
        softmax_row_f32_avx512(x + r * cols, y + r * cols, cols, visible,
                               x + (r + 1 < rows ? r + 1 : r) * cols);    /* (the last: itself) */
        continue;
#endif
        softmax_row_f32(x + r * cols, y + r * cols, cols, visible);
    }
}

/* ---- fp16 storage, fp32 math ------------------------------------------------------------------
 * No buffer for the fp32 row (no malloc, and the row can be long): three passes, e^(x - max) is
 * computed twice instead of being stored. */
#if defined(__AVX2__) && defined(__F16C__)
#define TL_LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define TL_STORE_F16(p, v) \
    _mm_storeu_si128((__m128i *)(void *)(p), _mm256_cvtps_ph((v), _MM_FROUND_TO_NEAREST_INT))

/* One row, 8 values at a time, the same three passes (a scalar tail finishes each pass). */
static void softmax_row_f16_avx2(const uint16_t *restrict xr, uint16_t *restrict yr, size_t cols)
{
    size_t j, n8 = cols - cols % 8;
    float max = tl_bits_f32(0xff800000u), sum = 0.0f, lanes[8];
    __m256 vmax = _mm256_set1_ps(max), vsum = _mm256_setzero_ps();
    for (j = 0; j < n8; j += 8)
        vmax = _mm256_max_ps(vmax, TL_LOAD_F16(xr + j));
    _mm256_storeu_ps(lanes, vmax);
    for (j = 0; j < 8; j++)
        if (!(lanes[j] <= max))
            max = lanes[j];
    for (j = n8; j < cols; j++)
        if (tl_f16_to_f32(xr[j]) > max)
            max = tl_f16_to_f32(xr[j]);
    vmax = _mm256_set1_ps(max);
    for (j = 0; j < n8; j += 8)
        vsum = _mm256_add_ps(vsum, tl_exp8(_mm256_sub_ps(TL_LOAD_F16(xr + j), vmax)));
    _mm256_storeu_ps(lanes, vsum);
    sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (j = n8; j < cols; j++)
        sum += tl_exp_nonpos(tl_f16_to_f32(xr[j]) - max);
    {
        __m256 vs = _mm256_set1_ps(sum);
        for (j = 0; j < n8; j += 8)
            TL_STORE_F16(yr + j, _mm256_div_ps(tl_exp8(_mm256_sub_ps(TL_LOAD_F16(xr + j), vmax)), vs));
    }
    for (j = n8; j < cols; j++)
        yr[j] = tl_f32_to_f16(tl_exp_nonpos(tl_f16_to_f32(xr[j]) - max) / sum);
}
#endif

void tinylm_softmax_f16(const uint16_t *restrict x, uint16_t *restrict y, size_t rows, size_t cols)
{
    size_t r, j;
    for (r = 0; r < rows; r++) {
        const uint16_t *xr = x + r * cols;
        uint16_t *yr = y + r * cols;
        float max = tl_bits_f32(0xff800000u), sum = 0.0f;
#if defined(__AVX2__) && defined(__F16C__)
        softmax_row_f16_avx2(xr, yr, cols);
        continue;
#endif
        for (j = 0; j < cols; j++) {
            float v = tl_f16_to_f32(xr[j]);
            if (v > max)
                max = v;
        }
        for (j = 0; j < cols; j++)
            sum += tl_exp_nonpos(tl_f16_to_f32(xr[j]) - max);
        for (j = 0; j < cols; j++)
            yr[j] = tl_f32_to_f16(tl_exp_nonpos(tl_f16_to_f32(xr[j]) - max) / sum);
    }
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
