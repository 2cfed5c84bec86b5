/* gemm_s8_avx512.h -- the AVX-512 VNNI int8 matmul loop, shared by matmul_s8.c and linear_s8.c.
 *
 * Included inside `#if TL_S8_AVX512` (AVX-512F + BW + VNNI, defined in dot_s8.h), so a build for a
 * CPU with AVX2 only never sees it.
 *
 * VPDPBUSD multiplies 4 unsigned bytes by 4 signed bytes and adds the 4 products to an int32 lane,
 * 16 lanes at a time, without saturation. x is signed, so it is fed as u = x + 128, which as a byte
 * is x ^ 0x80 (1..255), and the offset is taken back out:
 *     sum_k x[k] * w[k] = sum_k u[k] * w[k] - 128 * sum_k w[k]
 * The second term depends on the row of w only (and its group): it is computed once, when w is
 * packed, and is the value the accumulators start from. The u * w sums can pass 2^31 (255 * 127 * K)
 * but VPDPBUSD and VPADDD add modulo 2^32, and the exact result fits int32, so the final int32 is
 * exact -- the same bits as tl_dot_s8.
 *
 * Panels: w is packed 32 rows at a time (two vectors of 16 int32 lanes), one group of columns after
 * another. For each group of `gs` columns the panel holds
 *     32 words  c[j] = -128 * sum_k w[n0 + j, k]        (the start of the accumulators)
 *     ceil(gs / 4) steps of 32 words, word j = the 4 bytes w[n0 + j, k .. k + 3]
 * with zeros past the group's end and in rows past N. One step of the tile below loads the 2 vectors
 * of a step and meets TL_S8_MR broadcast words of x (4 bytes of each of TL_S8_MR rows): 2 * MR
 * VPDPBUSD into 2 * MR accumulators, a 4 x 32 block of w reused MR times from registers and every
 * word of x reused 32 times. matmul_s8 packs a block of columns as one "group" (no float step).
 */

#include <string.h>

#define TL_S8_NR 32                 /* rows of w per panel: 2 vectors of 16 int32 lanes */
#define TL_S8_MR 6                  /* rows of x per tile */
#define TL_S8_PANEL_WORDS 18432     /* 72 KB: 64 groups of 32 columns, or one group of 2300 */
#define TL_S8_MAX_GROUPS 64         /* groups per panel (linear_s8 keeps their 32 scales beside it) */

/* the gathers of tl_s8_pack take int32 byte offsets, up to 15 rows of w apart */
#define TL_S8_MAX_K ((size_t)0x7fffffff / 16)

/* words a panel needs per group of gs columns: the start values, then the steps */
#define TL_S8_GROUP_WORDS(gs) ((((gs) + 3) / 4 + 1) * TL_S8_NR)

/* 4 bytes at p, any alignment, as one word */
static inline int32_t tl_s8_word(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Pack rows n0 .. n0 + nr - 1 (nr <= 32) of w, starting at column pointer w (row stride ldw), as ng
 * consecutive groups of gs columns, in the layout described at the top. Rows nr .. 31 are zero.
 * Each step of 16 rows is one gather of 16 words (one from each row), so the panel is written in
 * order; VPDPBUSD with bytes of 1 sums the 4 bytes of each word into the group's row sums. A group's
 * short last step is read byte by byte (its word may end past the end of w). */
static void tl_s8_pack(const int8_t *w, size_t ldw, size_t nr, size_t gs, size_t ng, int32_t *wp)
{
    const __m512i ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    size_t full = gs / 4, steps = (gs + 3) / 4, v, j, g, s;
    for (v = 0; v < 2; v++) {                     /* rows 16 v .. 16 v + 15, lanes 0 .. 15 */
        size_t j0 = 16 * v;
        __mmask16 live = (__mmask16)(nr <= j0 ? 0u : nr - j0 >= 16 ? 0xffffu : (1u << (nr - j0)) - 1u);
        const int8_t *row0 = w + (nr > j0 ? j0 : 0) * ldw;
        int32_t offsets[16];
        __m512i idx;
        for (j = 0; j < 16; j++)                   /* byte offsets of the 16 rows: < 2^31 */
            offsets[j] = (int32_t)((j0 + j < nr ? j : 0) * ldw);
        idx = _mm512_loadu_si512((const void *)offsets);
        for (g = 0; g < ng; g++) {
            const int8_t *col = row0 + g * gs;
            int32_t *out = wp + g * (steps + 1) * TL_S8_NR + j0;
            __m512i sum = zero, word;
            for (s = 0; s < full; s++, col += 4) {
                word = _mm512_mask_i32gather_epi32(zero, live, idx, (const void *)col, 1);
                sum = _mm512_dpbusd_epi32(sum, ones, word);
                _mm512_storeu_si512((void *)(out + (s + 1) * TL_S8_NR), word);
            }
            if (full < steps) {                   /* the short last step, zero-padded */
                int32_t tail[16];
                for (j = 0; j < 16; j++) {
                    tail[j] = 0;
                    if (j0 + j < nr)
                        memcpy(&tail[j], col + offsets[j], gs - 4 * full);
                }
                word = _mm512_loadu_si512((const void *)tail);
                sum = _mm512_dpbusd_epi32(sum, ones, word);
                _mm512_storeu_si512((void *)(out + steps * TL_S8_NR), word);
            }
            /* start values -128 * sum: |sum| <= 127 * 2300, no overflow */
            _mm512_storeu_si512((void *)out, _mm512_slli_epi32(_mm512_sub_epi32(zero, sum), 7));
        }
    }
}

/* acc + VPDPBUSD(u, b), computed in place. GCC 12 gives the intrinsic's accumulator a fresh
 * register each loop iteration and copies all 12 back (a move per VPDPBUSD); an asm statement with
 * the accumulator as an in-out operand keeps it where it is. The same instruction either way. */
static inline __m512i tl_dpbusd(__m512i acc, __m512i u, __m512i b)
{
#if defined(__GNUC__) && !defined(__clang__)
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(b));    /* AT&T order: b, u, acc */
    return acc;
#else
    return _mm512_dpbusd_epi32(acc, u, b);
#endif
}

/* one step of the tile: 4 columns of each of the 6 rows of x (u = x ^ 0x80, broadcast to 16
 * lanes) against the 32 rows of the panel step at p. The 12 accumulators are named variables, so
 * that the compiler keeps them in registers. */
#define TL_S8_ROW(ci0, ci1, xi)                                                                  \
    {                                                                                            \
        __m512i u = _mm512_xor_si512(_mm512_set1_epi32(tl_s8_word((xi) + 4 * s)), flip);         \
        ci0 = tl_dpbusd(ci0, u, b0);                                                             \
        ci1 = tl_dpbusd(ci1, u, b1);                                                             \
    }

/* c[i][v] = the exact int32 dots of x row i (gs columns from xr[i]) with the 32 rows of one packed
 * group at wp (its start words, then its steps): lane j of c[i][v] is row 16 * v + j of the panel.
 * A short last step reads up to 3 bytes past the group (w is zero there, so they add nothing): the
 * caller makes sure those bytes exist (tl_s8_safe_rows). */
static inline void tl_s8_tile(const int8_t *const xr[TL_S8_MR], size_t gs, const int32_t *wp,
                              __m512i c[TL_S8_MR][2])
{
    const __m512i flip = _mm512_set1_epi32((int32_t)0x80808080u);
#define TL_S8_START(v) _mm512_loadu_si512((const void *)(wp + 16 * (v)))
    __m512i c00 = TL_S8_START(0), c10 = TL_S8_START(0), c20 = TL_S8_START(0), c30 = TL_S8_START(0);
    __m512i c40 = TL_S8_START(0), c50 = TL_S8_START(0), c01 = TL_S8_START(1), c11 = TL_S8_START(1);
    __m512i c21 = TL_S8_START(1), c31 = TL_S8_START(1), c41 = TL_S8_START(1), c51 = TL_S8_START(1);
#undef TL_S8_START
    size_t s, steps = (gs + 3) / 4;
    for (s = 0, wp += TL_S8_NR; s < steps; s++, wp += TL_S8_NR) {
        const __m512i b0 = _mm512_loadu_si512((const void *)wp);
        const __m512i b1 = _mm512_loadu_si512((const void *)(wp + 16));
        TL_S8_ROW(c00, c01, xr[0]) TL_S8_ROW(c10, c11, xr[1]) TL_S8_ROW(c20, c21, xr[2])
        TL_S8_ROW(c30, c31, xr[3]) TL_S8_ROW(c40, c41, xr[4]) TL_S8_ROW(c50, c51, xr[5])
    }
    c[0][0] = c00; c[0][1] = c01; c[1][0] = c10; c[1][1] = c11; c[2][0] = c20; c[2][1] = c21;
    c[3][0] = c30; c[3][1] = c31; c[4][0] = c40; c[4][1] = c41; c[5][0] = c50; c[5][1] = c51;
}
#undef TL_S8_ROW

/* The tile's row pointers xr[i] into x (row stride K) for rows m .. m + 5 (rows past M repeat the
 * last one) at column k0, for a block of `cols` columns read in groups of gs. The last row of x may
 * have no 3 bytes after its last short step: then it is read from pad, a zero-padded copy of its
 * block (pad holds cols + 3 bytes). */
static inline void tl_s8_rows(const int8_t *x, size_t M, size_t K, size_t m, size_t k0, size_t cols,
                              size_t gs, int8_t *pad, const int8_t *xr[TL_S8_MR])
{
    size_t i, mr = M - m < TL_S8_MR ? M - m : TL_S8_MR;
    for (i = 0; i < TL_S8_MR; i++)
        xr[i] = x + (m + (i < mr ? i : mr - 1)) * K + k0;
    if (m + mr == M && gs % 4 && k0 + cols - gs + 4 * ((gs + 3) / 4) > K) {
        memcpy(pad, xr[mr - 1], cols);
        memset(pad + cols, 0, 3);
        for (i = mr - 1; i < TL_S8_MR; i++)
            xr[i] = pad;
    }
}
