/* simd/softmax_avx512.h -- tinylm_exp_f32 and tinylm_softmax_f32 with AVX-512F, 16 lanes at a
 * time. Included by softmax.c, after its portable exp (tl_softmax_exp), whose constants and bits
 * these follow.
 */
#include <immintrin.h>

/* The same algorithm, 16 lanes at a time, the same operations in the same order (no FMA) up to
 * the polynomial p. The last step differs in form, not in value: tl_softmax_exp multiplies p by 2^(n/2)
 * and then by 2^(n - n/2) (two halves, so that n = 128 works); VSCALEFPS multiplies by 2^n in one
 * step. For every x in [TL_EXP_MIN, TL_EXP_MAX], p * 2^n is a normal float (1.2e-38 .. 3.4e38), so
 * each of those multiplications by a power of two is exact and both give the same bits. Lanes not
 * in `keep` are 0; what the polynomial computes for x outside the range is never used. */
static inline __m512 tl_softmax_avx512_exp_in_range(__m512 x, __mmask16 keep)
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

/* tl_softmax_exp, 16 lanes: tl_softmax_exp's early returns (NaN, x < TL_EXP_MIN, x > TL_EXP_MAX) become masks */
static inline __m512 tl_softmax_avx512_exp(__m512 x)
{
    __mmask16 nan_mask = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __mmask16 zero_mask = _mm512_cmp_ps_mask(x, _mm512_set1_ps(TL_EXP_MIN), _CMP_LT_OQ);
    __mmask16 inf_mask = _mm512_cmp_ps_mask(x, _mm512_set1_ps(TL_EXP_MAX), _CMP_GT_OQ);
    __m512 result = tl_softmax_avx512_exp_in_range(x, (__mmask16)~zero_mask);             /* x < TL_EXP_MIN: 0 */
    result = _mm512_mask_mov_ps(result, inf_mask, _mm512_castsi512_ps(_mm512_set1_epi32(0x7f800000)));
    return _mm512_mask_mov_ps(result, nan_mask, x);
}

/* tl_softmax_exp_nonpos, 16 lanes: for x <= 0 or NaN (e^(x - max) in a softmax) there is no overflow lane,
 * so one compare and one mask fewer. The same bits. */
static inline __m512 tl_softmax_avx512_exp_nonpos(__m512 x)
{
    __mmask16 nan_mask = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __mmask16 ok_mask = _mm512_cmp_ps_mask(x, _mm512_set1_ps(TL_EXP_MIN), _CMP_GE_OQ);  /* not NaN */
    return _mm512_mask_mov_ps(tl_softmax_avx512_exp_in_range(x, ok_mask), nan_mask, x);
}

/* tinylm_exp_f32: 16 values at a time, the last n % 16 by the scalar tl_softmax_exp (so a short
 * call shows the tests the scalar bits, which the lanes must equal) */
static void tl_exp_f32_avx512(const float *restrict x, float *restrict y, size_t n)
{
    size_t i;
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, tl_softmax_avx512_exp(_mm512_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] = tl_softmax_exp(x[i]);
}

/* one row of the portable softmax_f32 (softmax.c) 16 values at a time: the same three passes over the row (it is in L1:
 * 16 KB for 4096 values), the last partial vector of each pass through a lane mask. While the
 * exponentials are computed, the row `next` is fetched into the cache, a line per vector: the
 * next row's first pass then does not wait for memory. */
static void tl_softmax_avx512_row(const float *restrict x, float *restrict y, size_t cols,
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
        e = tl_softmax_avx512_exp_nonpos(_mm512_sub_ps(_mm512_loadu_ps(x + j), vmax));
        _mm512_storeu_ps(y + j, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    if (tail) {                                   /* lanes past `visible` add exactly 0 */
        __m512 e = tl_softmax_avx512_exp_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + n16), vmax));
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

static void tl_softmax_f32_avx512(const float *restrict x, float *restrict y, size_t rows, size_t cols,
                                  size_t causal_tq)
{
    size_t r;
    for (r = 0; r < rows; r++) {
        /* query i of its (Tq, cols) matrix sees keys j <= i + (cols - Tq) */
        size_t visible = causal_tq ? (r % causal_tq) + (cols - causal_tq) + 1 : cols;
        tl_softmax_avx512_row(x + r * cols, y + r * cols, cols, visible,
                              x + (r + 1 < rows ? r + 1 : r) * cols);    /* (the last: itself) */
    }
}
