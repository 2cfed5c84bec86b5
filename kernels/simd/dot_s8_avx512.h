/* simd/dot_s8_avx512.h -- AVX-512 VNNI int8 dots for few rows of x (a token at a time): one row of
 * x against 16 rows of w, w read as stored. Included by matmul_s8.c and linear_s8.c when
 * TL_S8_AVX512 (dot_s8.h) is 1.
 *
 * 64 columns per load (packing w, as simd/gemm_s8_avx512.h does, costs more than a matrix-vector
 * product). AVX-512 has no VPSIGNB, so b * sign(a) is a masked subtraction from 0 where a < 0;
 * VPDPBUSD then multiplies |a| by it. Lane l of row j's accumulator holds the sum over columns
 * 4l .. 4l + 3 of each 64; tl_dot_s8_avx512_fold16 adds them up, into the sums over the first 32 and
 * the last 32 columns (the two groups of a 64-column block when group_size = 32).
 */
#include <immintrin.h>

/* the mask of lanes 0 .. n - 1 of 16 (all 16 for n >= 16, none for n = 0) */
static inline __mmask16 tl_dot_s8_avx512_lanes16(size_t n)
{
    return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
}

/* acc + VPDPBUSD(u, b), computed in place. GCC 12 gives the intrinsic's accumulator a fresh
 * register each loop iteration and copies it back (a move per VPDPBUSD in a loop with many
 * accumulators); an asm statement with the accumulator as an in-out operand keeps it where it is.
 * The same instruction either way. */
static inline __m512i tl_dot_s8_avx512_dpbusd(__m512i acc, __m512i u, __m512i b)
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
static inline void tl_dot_s8_avx512_fold16(const __m512i v[16], __m512i *lo, __m512i *hi)
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
 * dot). b has nb >= 1 rows: lanes of rows past nb repeat the last row (the caller does not store
 * them). Loads past n are masked off: they read nothing. */
static inline void tl_dot_s8_avx512_1x16(const int8_t *a, const int8_t *b, size_t ldb, size_t nb,
                                         size_t n, __m512i *lo, __m512i *hi)
{
    const __m512i zero = _mm512_setzero_si512();
    const int8_t *rows[16];
    __m512i acc[16];
    size_t j, k;
    for (j = 0; j < 16; j++) {
        rows[j] = b + (j < nb ? j : nb - 1) * ldb;
        acc[j] = zero;
    }
    for (k = 0; k < n; k += 64) {
        __mmask64 live = n - k >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (n - k)) - 1;
        __m512i va = _mm512_maskz_loadu_epi8(live, a + k);
        __m512i abs_a = _mm512_abs_epi8(va);
        __mmask64 neg = _mm512_movepi8_mask(va);                       /* a < 0 */
        for (j = 0; j < 16; j++) {
            __m512i vb = _mm512_maskz_loadu_epi8(live, rows[j] + k);
            acc[j] = tl_dot_s8_avx512_dpbusd(acc[j], abs_a, _mm512_mask_sub_epi8(vb, neg, zero, vb));
        }
    }
    tl_dot_s8_avx512_fold16(acc, lo, hi);
}
