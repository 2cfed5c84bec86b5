/* simd/quant_s8_avx512.h -- tinylm_quantize_s8 with AVX-512F: each group 16 lanes at a time, the
 * same operations as the portable group (|x| as a bit mask, fp32 division, round half to even,
 * clamp); the group's last n % 16 values go through lane masks, so there is no scalar tail.
 * Groups of 16 .. 64 values (e.g. linear_s8's g = 32) go 16 groups at a time (tl_quant_s8_avx512_16groups):
 * one group alone waits on its horizontal max and scalar division; 16 share one reduction tree and one
 * vector division for their scales, and most values need no division (see TL_QUANT_S8_SAFE).
 * (x at 512 x 512, g = 32, on an Intel Xeon with AVX-512: 0.084 -> 0.046 ms.)
 */
#include <immintrin.h>

static void tl_quant_s8_avx512_group(const float *restrict xg, int8_t *restrict qg, float *restrict scale,
                                     size_t n)
{
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    __m512 vmax = _mm512_setzero_ps(), vs;
    __mmask16 nan = 0, tail = (__mmask16)((1u << (n % 16)) - 1u);
    size_t k, n16 = n - n % 16;
    float s;
    for (k = 0; k < n16; k += 16) {
        __m512 a = _mm512_and_ps(_mm512_loadu_ps(xg + k), abs_mask);
        nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        vmax = _mm512_max_ps(vmax, a);
    }
    if (tail) {                                   /* masked-off lanes load as 0: max |x| unchanged */
        __m512 a = _mm512_and_ps(_mm512_maskz_loadu_ps(tail, xg + n16), abs_mask);
        nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        vmax = _mm512_max_ps(vmax, a);
    }
    s = tl_quant_s8_scale(_mm512_reduce_max_ps(vmax), nan != 0);
    *scale = s;
    if (!tl_quant_s8_usable(s)) {                 /* 0, NaN or inf: the whole group is q = 0 */
        for (k = 0; k < n; k++)
            qg[k] = 0;
        return;
    }
    vs = _mm512_set1_ps(s);
    for (k = 0; k < n; k += 16) {
        __mmask16 m = k < n16 ? (__mmask16)0xffffu : tail;
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, xg + k), vs);
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm512_mask_cvtsepi32_storeu_epi8(qg + k, m, _mm512_cvtps_epi32(v));   /* exact: v is an integer */
    }
}

/* Small groups (16, 32, 48 or 64 values: v = 1 .. 4 vectors each), 16 groups at a time, so that no
 * group waits on its own horizontal max and scalar division:
 *   max |x| as integers: |x|'s bits order like |x| (NaN's bits above +inf's), so one unsigned max
 *     gives the group's max |x| and tells whether it held a NaN (max > 0x7f800000);
 *   the 16 maxima meet in one vector (a reduction tree of shuffles: lane 4 b + c ends up holding
 *     group 4 c + b, put back in order by one permute), and the 16 scales are one vector division;
 *   each value: x * (1 / s) where that provably rounds to the same integer as x / s (below), else
 *     the fp32 division; rounding to nearest even; the clamp to [-127, 127] as int32 (the same as
 *     clamping first), needed only for a subnormal scale (else |x / s| < 127.5);
 *   four vectors of int32 become 64 bytes by two saturating packs and one permute.
 * xs: 16 * v * 16 floats (16 consecutive groups), qs: as many bytes, scales: 16 floats.
 *
 * x / s without the division, where that gives the same q: for a normal scale s (>= 2^-126, so 1 / s is
 * finite), y = x * RN(1 / s) is x / s times (1 + e), |e| < 2^-23, and |x / s| <= max |x| / s < 128, so
 * |y - x / s| < 2^-16. When y is farther than 2^-12 from every half-integer (|y - round(y)| <
 * TL_QUANT_S8_SAFE), x / s and RN(x / s) (within 2^-17 of it) lie strictly on the same side of each, so
 * round_half_even(RN(x / s)) = round(y), with no tie to break. A vector with any lane closer (1 value
 * in 2048 on average, and every exact tie) takes the division. */
#define TL_QUANT_S8_SAFE 0.499755859375f        /* 0.5 - 2^-12 */

static inline void tl_quant_s8_avx512_16groups(const float *restrict xs, int8_t *restrict qs,
                                               float *restrict scales, size_t v)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf_bits = _mm512_set1_epi32(0x7f800000);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i unpack = order;                 /* dword 4 b + c of the packed bytes: 4 values of r[c], block b */
    __m512i a[16], t[8], u[4], w[2], amax;
    __m512 s;
    __mmask16 usable, normal;
    float sv[16], rv[16];
    size_t j, i, e, n = 16 * v;
    for (j = 0; j < 16; j++) {                    /* a[j]: 16 partial maxima of |x|'s bits, group j */
        a[j] = _mm512_and_si512(_mm512_loadu_si512((const void *)(xs + j * n)), abs_mask);
        for (i = 1; i < v; i++)
            a[j] = _mm512_max_epu32(a[j], _mm512_and_si512(_mm512_loadu_si512((const void *)(xs + j * n + 16 * i)),
                                                           abs_mask));
    }
    for (j = 0; j < 8; j++)                       /* t[j]: lanes 0-7 group 2j, 8-15 group 2j+1 */
        t[j] = _mm512_max_epu32(_mm512_shuffle_i32x4(a[2 * j], a[2 * j + 1], 0x44),
                                _mm512_shuffle_i32x4(a[2 * j], a[2 * j + 1], 0xee));
    for (j = 0; j < 4; j++)                       /* u[j]: 128-bit block b holds group 4j + b */
        u[j] = _mm512_max_epu32(_mm512_shuffle_i32x4(t[2 * j], t[2 * j + 1], 0x88),
                                _mm512_shuffle_i32x4(t[2 * j], t[2 * j + 1], 0xdd));
    for (j = 0; j < 2; j++)                       /* w[j], block b: lanes 0-1 group 8j + b, 2-3 8j + 4 + b */
        w[j] = _mm512_max_epu32(_mm512_unpacklo_epi64(u[2 * j], u[2 * j + 1]),
                                _mm512_unpackhi_epi64(u[2 * j], u[2 * j + 1]));
    amax = _mm512_max_epu32(                      /* lane 4b + c: group 4c + b */
        _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(w[0]), _mm512_castsi512_ps(w[1]), 0x88)),
        _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(w[0]), _mm512_castsi512_ps(w[1]), 0xdd)));
    amax = _mm512_permutexvar_epi32(order, amax);  /* lane j: group j */
    s = _mm512_div_ps(_mm512_castsi512_ps(amax), _mm512_set1_ps(127.0f));            /* tl_quant_s8_scale */
    s = _mm512_mask_mov_ps(s, _mm512_cmpgt_epu32_mask(amax, inf_bits),                 /* a NaN: NaN */
                           _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000)));
    usable = _mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_GT_OQ) &               /* tl_quant_s8_usable */
             _mm512_cmp_ps_mask(s, _mm512_set1_ps(3.40282347e38f), _CMP_LE_OQ);
    normal = _mm512_cmp_ps_mask(s, _mm512_set1_ps(1.17549435e-38f), _CMP_GE_OQ) & usable;
    _mm512_storeu_ps(scales, s);
    _mm512_storeu_ps(sv, s);
    _mm512_storeu_ps(rv, _mm512_div_ps(_mm512_set1_ps(1.0f), s));                  /* 1 / s */
    for (e = 0; e < n; e += 4) {                  /* vectors e .. e + 3 of the 16 v, 64 bytes of q */
        __m512i r[4], p01, p23;
        for (i = 0; i < 4; i++) {
            size_t g = (e + i) / v;               /* the group of vector e + i */
            const __m512 xv = _mm512_loadu_ps(xs + 16 * (e + i));
            int slow = (usable >> g & 1) != 0;
            r[i] = _mm512_setzero_si512();        /* a group whose scale is 0, NaN or inf: q = 0 */
            if (normal >> g & 1) {                /* x * (1 / s), where it rounds as x / s would */
                __m512 y = _mm512_mul_ps(xv, _mm512_set1_ps(rv[g]));
                __m512 yr = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                __m512 off = _mm512_and_ps(_mm512_sub_ps(y, yr), _mm512_castsi512_ps(abs_mask));
                slow = _mm512_cmp_ps_mask(off, _mm512_set1_ps(TL_QUANT_S8_SAFE), _CMP_LT_OQ) != 0xffffu;
                r[i] = _mm512_cvtps_epi32(yr);    /* exact: yr is an integer */
            }
            if (slow) {                           /* the division itself */
                __m512 d = _mm512_div_ps(xv, _mm512_set1_ps(sv[g]));
                r[i] = _mm512_cvt_roundps_epi32(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            }
            if (!(normal >> g & 1))               /* a subnormal scale: x / s can pass 127 */
                r[i] = _mm512_min_epi32(_mm512_max_epi32(r[i], lo), hi);
        }
        p01 = _mm512_packs_epi32(r[0], r[1]);     /* int16, per 128 bits: 4 of r0, 4 of r1 */
        p23 = _mm512_packs_epi32(r[2], r[3]);     /* (exact: |q| <= 127) */
        r[0] = _mm512_packs_epi16(p01, p23);      /* int8, per 128 bits: 4 of r0, r1, r2, r3 each */
        r[0] = _mm512_permutexvar_epi32(unpack, r[0]);
        _mm512_storeu_si512((void *)(qs + 16 * e), r[0]);
    }
}

static void tl_quantize_s8_avx512(const float *restrict x, int8_t *restrict q, float *restrict scale,
                                  size_t M, size_t K, size_t group_size)
{
    size_t G = K / group_size, t = 0, T = M * G;  /* the groups of all rows follow one another */
    if (group_size % 16 == 0 && group_size <= 64)
        for (; t + 16 <= T; t += 16)              /* v as a constant: the loops over it unroll */
            switch (group_size / 16) {
            case 1: tl_quant_s8_avx512_16groups(x + t * group_size, q + t * group_size, scale + t, 1); break;
            case 2: tl_quant_s8_avx512_16groups(x + t * group_size, q + t * group_size, scale + t, 2); break;
            case 3: tl_quant_s8_avx512_16groups(x + t * group_size, q + t * group_size, scale + t, 3); break;
            default: tl_quant_s8_avx512_16groups(x + t * group_size, q + t * group_size, scale + t, 4); break;
            }
    for (; t < T; t++)
        tl_quant_s8_avx512_group(x + t * group_size, q + t * group_size, scale + t, group_size);
}
