/* dot_s8.h -- the int8 dot-product inner loops, shared by matmul_s8.c and linear_s8.c.
 *
 * Values are int8 in [-127, 127] (never -128); sums are exact int32 (n <= 133144).
 * One portable C version, plus blocks for instruction sets that have a faster way:
 *   __AVX2__: _mm256_maddubs_epi16 multiplies unsigned by signed bytes, so we feed it |a| and
 *             b * sign(a) (_mm256_sign_epi8). Each pair sum of products is at most 2 * 127 * 127 =
 *             32258, which fits int16 without saturating; _mm256_madd_epi16 with ones widens to int32.
 *   __AVX512VNNI__ (with __AVX512VL__): VPDPBUSD does those three steps in one instruction: it
 *             multiplies 4 unsigned by 4 signed bytes and adds the 4 products to an int32 lane.
 *   TL_S8_AVX512 (AVX-512F + BW + VNNI): 64 columns per instruction, one row of x against 16 rows
 *             of w (below, for few rows of x), and the packed matmul of gemm_s8_avx512.h (many rows).
 *   (Arm DSP / MVE blocks are added here by the microcontroller port.)
 */
#ifndef TINYLM_DOT_S8_H
#define TINYLM_DOT_S8_H

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* AVX-512 with the VNNI int8 dot product (Intel Cascade Lake, Ice Lake and later; AMD Zen 4 and
 * later): the 1 x 16 dots below and the packed matmul of gemm_s8_avx512.h. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define TL_S8_AVX512 1
#else
#define TL_S8_AVX512 0
#endif

/* sum_k a[k] * b[k], exact int32: the reference for everything below. */
static inline int32_t tl_dot_s8(const int8_t *a, const int8_t *b, size_t n)
{
    int32_t sum = 0;
    size_t k;
    for (k = 0; k < n; k++)
        sum += (int32_t)a[k] * (int32_t)b[k];
    return sum;
}

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 4 rows j = 0..3 of b, in plain C: each a[k] is loaded
 * once for four rows, and four running sums stay in registers. On a core with no DSP or SIMD (Cortex-M3,
 * or any build without them) that is ~3 instructions per multiply-accumulate instead of ~5 for four
 * separate tl_dot_s8 passes. Same int32 sums (integer addition is exact in any order). */
static inline void tl_dot_s8_1x4(const int8_t *a, const int8_t *b, size_t ldb, size_t n, int32_t out[4])
{
    const int8_t *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k;
    for (k = 0; k < n; k++) {
        int32_t ak = a[k];
        s0 += ak * b0[k];
        s1 += ak * b1[k];
        s2 += ak * b2[k];
        s3 += ak * b3[k];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

#if defined(__AVX2__)
/* acc + the products of u (unsigned bytes, here |a|) and s (signed bytes), 4 adjacent products summed
 * into each int32 lane: one VPDPBUSD with VNNI; with AVX2 alone, maddubs into int16 pairs (at most
 * 2 * 127 * 127 = 32258: no saturation), then madd with ones into int32. The same exact sums. */
static inline __m256i tl_madd_s8_avx2(__m256i acc, __m256i u, __m256i s)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* 8 int32 lanes -> one vector with lane j = horizontal sum of acc[j]. */
static inline __m256i tl_hsum8_epi32(const __m256i acc[8])
{
    __m256i t0 = _mm256_hadd_epi32(acc[0], acc[1]);
    __m256i t1 = _mm256_hadd_epi32(acc[2], acc[3]);
    __m256i t2 = _mm256_hadd_epi32(acc[4], acc[5]);
    __m256i t3 = _mm256_hadd_epi32(acc[6], acc[7]);
    __m256i u0 = _mm256_hadd_epi32(t0, t1);   /* per 128-bit half: partial sums of rows 0..3 */
    __m256i u1 = _mm256_hadd_epi32(t2, t3);   /* per 128-bit half: partial sums of rows 4..7 */
    __m256i lo = _mm256_permute2x128_si256(u0, u1, 0x20);
    __m256i hi = _mm256_permute2x128_si256(u0, u1, 0x31);
    return _mm256_add_epi32(lo, hi);
}
#endif

#if defined(__ARM_FEATURE_MVE)
/* Armv8.1-M Helium (MVE, Cortex-M55/M85): a vector register holds 16 int8, and VMLADAVA multiplies
 * two of them lane by lane and adds all 16 products to a 32-bit scalar, exactly, in one instruction.
 * One load of a's 16 bytes serves four rows of b. */
#include <arm_mve.h>

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 4 rows j = 0..3 of b, over k < n rounded down to a
 * multiple of 16, which is returned (the caller adds the tail) */
static inline size_t tl_dot_s8_1x4_mve(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                       int32_t out[4])
{
    const int8_t *b01 = b, *b23 = b + 2 * ldb;        /* rows 0 and 2; rows 1 and 3 are + ldb */
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k;
    for (k = 0; k + 16 <= n; k += 16) {
        int8x16_t va = vld1q_s8(a + k);
        s0 = vmladavaq_s8(s0, va, vld1q_s8(b01 + k));
        s1 = vmladavaq_s8(s1, va, vld1q_s8(b01 + ldb + k));
        s2 = vmladavaq_s8(s2, va, vld1q_s8(b23 + k));
        s3 = vmladavaq_s8(s3, va, vld1q_s8(b23 + ldb + k));
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
    return k;
}
#endif

#if defined(__ARM_FEATURE_DSP)
/* Armv7E-M DSP (Cortex-M4, M7, M33, M55): SMLAD multiplies two pairs of 16-bit halves and adds
 * both products to a 32-bit accumulator, in one instruction. SXTB16 sign-extends bytes 0 and 2 of
 * a word into its two 16-bit halves; with the word rotated right by 8 first, bytes 1 and 3. So four
 * int8 pairs cost one load, two SXTB16 and two SMLAD per row of b, and a's word is split once for
 * four rows. The products are added in another order than tl_dot_s8's, but integer sums are exact:
 * the int32 is the same (|a*b| <= 127*127 is exact in the 16x16 multiply). */
#include <arm_acle.h>

/* four int8 at p, any alignment, as one word (Armv7-M loads unaligned words in hardware) */
static inline uint32_t tl_load4_s8(const int8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* bytes 1 and 3 of v, sign-extended to two int16: SXTB16 with its built-in rotation. GCC 12 does
 * not fold __sxtb16(__ror(v, 8)) into one instruction, so we write it (one instruction saved per
 * word of a and of b). */
static inline int16x2_t tl_sxtb16_ror8(uint32_t v)
{
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* s + the dot product of four int8 pairs, a's word already split into even and odd bytes */
static inline int32_t tl_smlad4_s8(int16x2_t a_even, int16x2_t a_odd, uint32_t vb, int32_t s)
{
    return __smlad(a_odd, tl_sxtb16_ror8(vb), __smlad(a_even, __sxtb16((int8x4_t)vb), s));
}

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 4 rows j = 0..3 of b, over k < n rounded down to a
 * multiple of 4, which is returned (the caller adds the tail). Four rows, not eight: 4 sums, a's
 * two halves, 2 row pointers and the stride fit the 13 usable registers without spilling. */
static inline size_t tl_dot_s8_1x4_dsp(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                       int32_t out[4])
{
    const int8_t *a_end = a + (n & ~(size_t)3);
    const int8_t *b01 = b, *b23 = b + 2 * ldb;        /* rows 0 and 2; rows 1 and 3 are + ldb */
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (; a < a_end; a += 4, b01 += 4, b23 += 4) {
        uint32_t va = tl_load4_s8(a);
        int16x2_t a_even = __sxtb16((int8x4_t)va), a_odd = tl_sxtb16_ror8(va);
        s0 = tl_smlad4_s8(a_even, a_odd, tl_load4_s8(b01), s0);
        s1 = tl_smlad4_s8(a_even, a_odd, tl_load4_s8(b01 + ldb), s1);
        s2 = tl_smlad4_s8(a_even, a_odd, tl_load4_s8(b23), s2);
        s3 = tl_smlad4_s8(a_even, a_odd, tl_load4_s8(b23 + ldb), s3);
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
    return n & ~(size_t)3;
}
#endif

/* out[j] = sum_k a[k] * b[j * ldb + k] for the 8 rows j = 0..7 of b: one row of x against eight
 * rows of w, so each load of a is used eight times. */
static inline void tl_dot_s8_1x8(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                 int32_t out[8])
{
    size_t j, k = 0;
#if defined(__AVX2__)
    {                                 /* |a| * sign(b, a), the products summed into int32 lanes */
        __m256i acc[8];
        for (j = 0; j < 8; j++)
            acc[j] = _mm256_setzero_si256();
        for (; k + 32 <= n; k += 32) {
            __m256i va = _mm256_loadu_si256((const __m256i *)(a + k));
            __m256i abs_a = _mm256_sign_epi8(va, va);
            for (j = 0; j < 8; j++) {
                __m256i vb = _mm256_loadu_si256((const __m256i *)(b + j * ldb + k));
                acc[j] = tl_madd_s8_avx2(acc[j], abs_a, _mm256_sign_epi8(vb, va));
            }
        }
        _mm256_storeu_si256((__m256i *)out, tl_hsum8_epi32(acc));
    }
#elif defined(__ARM_FEATURE_MVE)
    k = tl_dot_s8_1x4_mve(a, b, ldb, n, out);             /* rows 0..3, then rows 4..7 */
    tl_dot_s8_1x4_mve(a, b + 4 * ldb, ldb, n, out + 4);
#elif defined(__ARM_FEATURE_DSP)
    k = tl_dot_s8_1x4_dsp(a, b, ldb, n, out);             /* rows 0..3, then rows 4..7 */
    tl_dot_s8_1x4_dsp(a, b + 4 * ldb, ldb, n, out + 4);
#else
    tl_dot_s8_1x4(a, b, ldb, n, out);                     /* rows 0..3, then rows 4..7 */
    tl_dot_s8_1x4(a, b + 4 * ldb, ldb, n, out + 4);
    k = n;
#endif
    if (k < n)                                    /* the tail (or everything, portably) */
        for (j = 0; j < 8; j++)
            out[j] += tl_dot_s8(a + k, b + j * ldb + k, n - k);
}

#if TL_S8_AVX512
/* ---- AVX-512 VNNI, few rows of x (a token at a time): one row of x against 16 rows of w ------
 * w is read as stored, 64 columns per load (packing it, as gemm_s8_avx512.h does, costs more than
 * a matrix-vector product). AVX-512 has no VPSIGNB, so b * sign(a) is a masked subtraction from 0
 * where a < 0; VPDPBUSD then multiplies |a| by it. Lane l of row j's accumulator holds the sum
 * over columns 4l .. 4l + 3 of each 64; tl_s8_fold16 adds them up, into the sums over the first 32
 * and the last 32 columns (the two groups of a 64-column block when group_size = 32). */

/* the mask of lanes 0 .. n - 1 of 16 (all 16 for n >= 16, none for n = 0) */
static inline __mmask16 tl_lanes16(size_t n)
{
    return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
}

/* acc + VPDPBUSD(u, b), computed in place. GCC 12 gives the intrinsic's accumulator a fresh
 * register each loop iteration and copies it back (a move per VPDPBUSD in a loop with many
 * accumulators); an asm statement with the accumulator as an in-out operand keeps it where it is.
 * The same instruction either way. */
static inline __m512i tl_dpbusd(__m512i acc, __m512i u, __m512i b)
{
#if defined(__GNUC__) && !defined(__clang__)
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(b));    /* AT&T order: b, u, acc */
    return acc;
#else
    return _mm512_dpbusd_epi32(acc, u, b);
#endif
}

/* v[j] (row j: 16 lanes of 4-column sums) -> lo, hi with lane j = row j's sum over columns
 * 0..31 and 32..63 of the block */
static inline void tl_s8_fold16(const __m512i v[16], __m512i *lo, __m512i *hi)
{
    __m512i t[8], u[4], x, y;
    size_t i;
    for (i = 0; i < 8; i++)        /* rows 2i, 2i+1, per 128 bits: a0+a2, b0+b2, a1+a3, b1+b3 */
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    for (i = 0; i < 4; i++)        /* rows 4i .. 4i+3, per 128 bits: their sums over 16 columns */
        u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                                _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
    /* 128-bit lanes: x = (rows 0-3 lo, rows 0-3 hi, rows 4-7 lo, rows 4-7 hi), y: rows 8-15 */
    x = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], 0x88), _mm512_shuffle_i32x4(u[0], u[1], 0xdd));
    y = _mm512_add_epi32(_mm512_shuffle_i32x4(u[2], u[3], 0x88), _mm512_shuffle_i32x4(u[2], u[3], 0xdd));
    *lo = _mm512_shuffle_i32x4(x, y, 0x88);
    *hi = _mm512_shuffle_i32x4(x, y, 0xdd);
}

/* lo, hi (lane j for row j of b, at b + j * ldb) = the dots of a with the 16 rows over n columns,
 * split as above for n <= 64; for n > 64 over every 64-column block, summed (so lo + hi is the
 * dot). Loads past n are masked off: they read nothing. */
static inline void tl_dot_s8_1x16_avx512(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                         __m512i *lo, __m512i *hi)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i acc[16];
    size_t j, k;
    for (j = 0; j < 16; j++)
        acc[j] = zero;
    for (k = 0; k < n; k += 64) {
        __mmask64 live = n - k >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (n - k)) - 1;
        __m512i va = _mm512_maskz_loadu_epi8(live, a + k);
        __m512i abs_a = _mm512_abs_epi8(va);
        __mmask64 neg = _mm512_movepi8_mask(va);                       /* a < 0 */
        for (j = 0; j < 16; j++) {
            __m512i vb = _mm512_maskz_loadu_epi8(live, b + j * ldb + k);
            acc[j] = tl_dpbusd(acc[j], abs_a, _mm512_mask_sub_epi8(vb, neg, zero, vb));
        }
    }
    tl_s8_fold16(acc, lo, hi);
}
#endif

#endif /* TINYLM_DOT_S8_H */
