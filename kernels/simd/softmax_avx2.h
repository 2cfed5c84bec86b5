/* simd/softmax_avx2.h -- tinylm_exp_f32, tinylm_softmax_f32 and (with F16C) tinylm_softmax_f16
 * with AVX2, 8 lanes at a time; the last n % 8 values of each pass go through softmax.c's portable
 * exp (tl_softmax_exp, tl_softmax_exp_nonpos), whose constants and bits these follow. An AVX-512
 * build takes the fp32 variants of simd/softmax_avx512.h and only the fp16 one from here (there is
 * no AVX-512 fp16 softmax), so the fp32 ones are compiled only without AVX-512F.
 */
#include <immintrin.h>

/* The same algorithm, 8 lanes at a time, the same operations in the same order (no FMA), so it
 * returns the same bits as tl_softmax_exp. */
static inline __m256 tl_softmax_avx2_exp(__m256 x)
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
    /* n / 2 truncated toward zero, like C's integer division in tl_softmax_exp */
    n1 = _mm256_srai_epi32(_mm256_add_epi32(ni, _mm256_srli_epi32(ni, 31)), 1);
    n2 = _mm256_sub_epi32(ni, n1);
    n1 = _mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23);
    n2 = _mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23);
    result = _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(n1)), _mm256_castsi256_ps(n2));
    result = _mm256_andnot_ps(zero_mask, result);
    result = _mm256_blendv_ps(result, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)), inf_mask);
    return _mm256_blendv_ps(result, x, nan_mask);
}

#if !defined(__AVX512F__)     /* (with AVX-512F, simd/softmax_avx512.h has the fp32 variants) */
/* tinylm_exp_f32 */
static void tl_exp_f32_avx2(const float *restrict x, float *restrict y, size_t n)
{
    size_t i;
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, tl_softmax_avx2_exp(_mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] = tl_softmax_exp(x[i]);
}

/* softmax of the first `visible` values of one row, the same three passes as the portable loop
 * (max, e = exp(x - max) and their sum, e / sum); the rest of the row (a causal mask) gets 0. The 8
 * lanes' sums are added pairwise, then the tail's values one by one. */
static void tl_softmax_avx2_row(const float *restrict x, float *restrict y, size_t cols, size_t visible)
{
    float max = tl_bits_f32(0xff800000u), sum, lanes[8];  /* -inf; NaNs are skipped here but reach e */
    __m256 vmax, vsum = _mm256_setzero_ps(), vs;
    size_t j = 0;
    if (visible >= 8) {                             /* (a NaN may win here: the row is NaN anyway) */
        vmax = _mm256_loadu_ps(x);
        for (j = 8; j + 8 <= visible; j += 8)
            vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + j));
        _mm256_storeu_ps(lanes, vmax);
        for (j = 0; j < 8; j++)
            if (!(lanes[j] <= max))
                max = lanes[j];
        j = visible - visible % 8;
    }
    for (; j < visible; j++)
        if (x[j] > max)
            max = x[j];
    vmax = _mm256_set1_ps(max);
    for (j = 0; j + 8 <= visible; j += 8) {
        __m256 e = tl_softmax_avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmax));
        _mm256_storeu_ps(y + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    _mm256_storeu_ps(lanes, vsum);
    sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
          ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (; j < visible; j++) {
        y[j] = tl_softmax_exp_nonpos(x[j] - max);
        sum += y[j];
    }
    vs = _mm256_set1_ps(sum);
    for (j = 0; j + 8 <= visible; j += 8)
        _mm256_storeu_ps(y + j, _mm256_div_ps(_mm256_loadu_ps(y + j), vs));
    for (; j < visible; j++)
        y[j] = y[j] / sum;
    for (j = visible; j < cols; j++)
        y[j] = 0.0f;
}

static void tl_softmax_f32_avx2(const float *restrict x, float *restrict y, size_t rows, size_t cols,
                                size_t causal_tq)
{
    size_t r;
    for (r = 0; r < rows; r++) {
        /* query i of its (Tq, cols) matrix sees keys j <= i + (cols - Tq) */
        size_t visible = causal_tq ? (r % causal_tq) + (cols - causal_tq) + 1 : cols;
        tl_softmax_avx2_row(x + r * cols, y + r * cols, cols, visible);
    }
}
#endif

#if defined(__F16C__)
/* ---- fp16 storage: loads and stores convert with F16C (round to nearest even) ---- */
#define TL_SOFTMAX_LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define TL_SOFTMAX_STORE_F16(p, v) \
    _mm_storeu_si128((__m128i *)(void *)(p), _mm256_cvtps_ph((v), _MM_FROUND_TO_NEAREST_INT))

/* One row, 8 values at a time, the same three passes (a scalar tail finishes each pass). */
static void tl_softmax_avx2_row_f16(const uint16_t *restrict xr, uint16_t *restrict yr, size_t cols)
{
    size_t j, n8 = cols - cols % 8;
    float max = tl_bits_f32(0xff800000u), sum = 0.0f, lanes[8];
    __m256 vmax = _mm256_set1_ps(max), vsum = _mm256_setzero_ps();
    for (j = 0; j < n8; j += 8)
        vmax = _mm256_max_ps(vmax, TL_SOFTMAX_LOAD_F16(xr + j));
    _mm256_storeu_ps(lanes, vmax);
    for (j = 0; j < 8; j++)
        if (!(lanes[j] <= max))
            max = lanes[j];
    for (j = n8; j < cols; j++)
        if (tl_f16_to_f32(xr[j]) > max)
            max = tl_f16_to_f32(xr[j]);
    vmax = _mm256_set1_ps(max);
    for (j = 0; j < n8; j += 8)
        vsum = _mm256_add_ps(vsum, tl_softmax_avx2_exp(_mm256_sub_ps(TL_SOFTMAX_LOAD_F16(xr + j), vmax)));
    _mm256_storeu_ps(lanes, vsum);
    sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
          ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (j = n8; j < cols; j++)
        sum += tl_softmax_exp_nonpos(tl_f16_to_f32(xr[j]) - max);
    {
        __m256 vs = _mm256_set1_ps(sum);
        for (j = 0; j < n8; j += 8) {
            __m256 e = tl_softmax_avx2_exp(_mm256_sub_ps(TL_SOFTMAX_LOAD_F16(xr + j), vmax));
            TL_SOFTMAX_STORE_F16(yr + j, _mm256_div_ps(e, vs));
        }
    }
    for (j = n8; j < cols; j++)
        yr[j] = tl_f32_to_f16(tl_softmax_exp_nonpos(tl_f16_to_f32(xr[j]) - max) / sum);
}

static void tl_softmax_f16_avx2(const uint16_t *restrict x, uint16_t *restrict y, size_t rows, size_t cols)
{
    size_t r;
    for (r = 0; r < rows; r++)
        tl_softmax_avx2_row_f16(x + r * cols, y + r * cols, cols);
}
#endif
