/* simd/gemm_s8_avx512.h -- the packed AVX-512 VNNI int8 matmul, shared by the AVX-512 variants of
 * matmul_s8 and linear_s8 (simd/matmul_s8_avx512.h, simd/linear_s8_avx512.h) for 6 rows of x or
 * more. Uses simd/dot_s8_avx512.h (included before it).
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
 * with zeros past the group's end (lanes of rows past N repeat the last row; they are never
 * stored). One step of the tile below loads the 2 vectors of a step and meets TL_S8_MR broadcast
 * words of x (4 bytes of each of TL_S8_MR rows): 2 * MR VPDPBUSD into 2 * MR accumulators, a 4 x 32
 * block of w reused MR times from registers and every word of x reused 32 times. matmul_s8 packs a
 * block of columns as one "group" (no float step). Packing costs about as much as computing 6 rows
 * of y, so fewer rows of x take the 1 x 16 dots of simd/dot_s8_avx512.h instead, on w as stored.
 *
 * x is read 4 bytes at a time, so the callers route K < 4 elsewhere (tl_gemm_s8_avx512_rows says
 * why): then no read passes the end of x.
 */

#include <string.h>

#define TL_S8_NR 32                 /* rows of w per panel: 2 vectors of 16 int32 lanes */
#define TL_S8_MR 6                  /* rows of x per tile */
#define TL_S8_PANEL_WORDS 18432     /* 72 KB: 64 groups of 32 columns, or one group of 2300 */
#define TL_S8_MAX_GROUPS 64         /* groups per panel (linear_s8 keeps their 32 scales beside it) */

/* words a panel needs per group of gs columns: the start values, then the steps */
#define TL_S8_GROUP_WORDS(gs) ((((gs) + 3) / 4 + 1) * TL_S8_NR)

/* 4 bytes at p, any alignment, as one word */
static inline int32_t tl_gemm_s8_avx512_word(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* out[c] (lane j) = word c of rows[j], for the first `bytes` (<= 64) bytes of each row and c < 16:
 * a 16 x 16 transpose of 32-bit words (64 shuffles). Bytes past `bytes` read as 0 (masked loads). */
static inline void tl_gemm_s8_avx512_transpose16(const void *const rows[16], size_t bytes, __m512i out[16])
{
    __mmask64 live = bytes >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << bytes) - 1;
    __m512i r[16], t[16];
    size_t i;
    for (i = 0; i < 16; i++)
        r[i] = _mm512_maskz_loadu_epi8(live, rows[i]);
    for (i = 0; i < 16; i += 2) {         /* per 128 bits: rows i, i+1 at words 0, 1 | 2, 3 */
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (i = 0; i < 16; i += 4) {         /* per 128 bits: rows i .. i+3 at word 0 | 1 | 2 | 3 */
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (i = 0; i < 4; i++) {             /* 128-bit blocks of rows 0-3, 4-7 | rows 8-11, 12-15 */
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (i = 0; i < 4; i++) {             /* word 4 q + i from the 128-bit lane q of every row */
        out[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        out[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        out[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        out[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* Pack rows n0 .. n0 + nr - 1 (nr <= 32) of w, starting at column pointer w (row stride ldw), as ng
 * consecutive groups of gs columns, in the layout described at the top. Lanes of rows past nr
 * repeat the last row (their results are never stored). 16 rows x 64 columns at a time are read
 * as stored and transposed in registers, so both w and the panel are accessed in order; VPDPBUSD
 * with bytes of 1 sums each word's 4 bytes into the group's row sums. When a group does not end on
 * a word (gs % 4) and another follows it, the words are not those of the rows as stored: then the
 * panel is filled one word at a time. */
static void tl_gemm_s8_avx512_pack(const int8_t *w, size_t ldw, size_t nr, size_t gs, size_t ng, int32_t *wp)
{
    const __m512i ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    size_t steps = (gs + 3) / 4, v, j, g, s, t, k;
    for (v = 0; v < 2; v++) {                     /* rows 16 v .. 16 v + 15, lanes 0 .. 15 */
        const int8_t *rows[16];
        int32_t *out = wp + 16 * v;
        __m512i sum = zero;
        for (j = 0; j < 16; j++)
            rows[j] = w + (16 * v + j < nr ? 16 * v + j : nr - 1) * ldw;
        if (gs % 4 && ng > 1) {
            for (g = 0; g < ng; g++, out += (steps + 1) * TL_S8_NR)
                for (j = 0; j < 16; j++) {
                    const int8_t *wr = rows[j] + g * gs;
                    int32_t rsum = 0;
                    for (k = 0; k < gs; k++)
                        rsum += wr[k];
                    out[j] = -128 * rsum;         /* |rsum| <= 127 * 2300: no overflow */
                    for (s = 0; s < steps; s++) {
                        int32_t word = 0;
                        memcpy(&word, wr + 4 * s, gs - 4 * s < 4 ? gs - 4 * s : 4);
                        out[(s + 1) * TL_S8_NR + j] = word;
                    }
                }
            continue;
        }
        /* the words of a row are its groups' steps in order; after each group's last, its sums */
        for (s = 0, g = 0, k = 0; g < ng; k += 64) {
            const void *at[16];
            __m512i word[16];
            size_t bytes = ng * gs - k < 64 ? ng * gs - k : 64;
            for (j = 0; j < 16; j++)
                at[j] = rows[j] + k;
            tl_gemm_s8_avx512_transpose16(at, bytes, word);
            for (t = 0; t < (bytes + 3) / 4; t++) {
                sum = _mm512_dpbusd_epi32(sum, ones, word[t]);
                _mm512_storeu_si512((void *)(out + (s + 1) * TL_S8_NR), word[t]);
                if (++s == steps) {               /* start values -128 * sum (no overflow) */
                    _mm512_storeu_si512((void *)out, _mm512_slli_epi32(_mm512_sub_epi32(zero, sum), 7));
                    out += (steps + 1) * TL_S8_NR;
                    sum = zero;
                    s = 0;
                    g++;
                }
            }
        }
    }
}

/* one step of the tile: 4 columns of each of the 6 rows of x (u = x ^ 0x80, broadcast to 16
 * lanes) against the 32 rows of the panel step at p. The 12 accumulators are named variables, so
 * that the compiler keeps them in registers. */
#define TL_S8_ROW(ci0, ci1, xi)                                                                  \
    {                                                                                            \
        __m512i u = _mm512_xor_si512(_mm512_set1_epi32(tl_gemm_s8_avx512_word((xi) + 4 * s)), flip);         \
        ci0 = tl_dot_s8_avx512_dpbusd(ci0, u, b0);                                                             \
        ci1 = tl_dot_s8_avx512_dpbusd(ci1, u, b1);                                                             \
    }

/* c[i][v] = the exact int32 dots of x row i (gs columns from xr[i]) with the 32 rows of one packed
 * group at wp (its start words, then its steps): lane j of c[i][v] is row 16 * v + j of the panel.
 * A short last step reads up to 3 bytes past the group (w is zero there, so they add nothing): the
 * caller makes sure those bytes exist (tl_gemm_s8_avx512_rows). */
static inline void tl_gemm_s8_avx512_tile(const int8_t *const xr[TL_S8_MR], size_t gs, const int32_t *wp,
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
 * last one) at column k0, for a block of `cols` columns read in groups of gs. A short last step
 * reads up to 3 bytes past a row's block. For every row but the last they lie in the next row,
 * which is why the packed paths require K >= 4 (with K = 1, rows M-3 and M-2 would also read past
 * the end of x); the last row of x may have no 3 bytes after it: then it is read from pad, a
 * zero-padded copy of its block (pad holds cols + 3 bytes). */
static inline void tl_gemm_s8_avx512_rows(const int8_t *x, size_t M, size_t K, size_t m, size_t k0, size_t cols,
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

#define TL_S8_KC ((TL_S8_PANEL_WORDS / TL_S8_NR - 1) * 4)   /* columns per panel: 2300 */

/* y (M, N) int32 = x @ w.T, for matmul_s8 and for linear_s8 with one group per row: panels of 32
 * rows of w and TL_S8_KC columns (one "group" per panel), a 6 x 32 tile of y per step. Lanes past
 * N are masked off; the sums of earlier column blocks wait in y (int32 adds: exact). y is only
 * read and written through vector loads and stores (linear_s8 lends its float output for it). */
static void tl_gemm_s8_avx512(const int8_t *x, const int8_t *w, int32_t *y, size_t M, size_t N,
                                size_t K)
{
    int32_t wp[TL_S8_PANEL_WORDS];
    int8_t pad[TL_S8_KC + 3];
    size_t n0, k0, m, i, v;
    for (n0 = 0; n0 < N; n0 += TL_S8_NR) {
        size_t nr = N - n0 < TL_S8_NR ? N - n0 : TL_S8_NR;
        __mmask16 lanes[2];                       /* the columns n0 .. n0 + nr - 1 of y */
        lanes[0] = tl_dot_s8_avx512_lanes16(nr);
        lanes[1] = tl_dot_s8_avx512_lanes16(nr > 16 ? nr - 16 : 0);
        for (k0 = 0; k0 < K; k0 += TL_S8_KC) {
            size_t kc = K - k0 < TL_S8_KC ? K - k0 : TL_S8_KC;
            tl_gemm_s8_avx512_pack(w + n0 * K + k0, K, nr, kc, 1, wp);
            for (m = 0; m < M; m += TL_S8_MR) {
                size_t mr = M - m < TL_S8_MR ? M - m : TL_S8_MR;
                const int8_t *xr[TL_S8_MR];
                __m512i c[TL_S8_MR][2];
                tl_gemm_s8_avx512_rows(x, M, K, m, k0, kc, kc, pad, xr);
                tl_gemm_s8_avx512_tile(xr, kc, wp, c);
                for (i = 0; i < mr; i++)
                    for (v = 0; v < 2; v++) {
                        int32_t *yr = y + (m + i) * N + n0 + 16 * v;
                        if (k0)
                            c[i][v] = _mm512_add_epi32(c[i][v], _mm512_maskz_loadu_epi32(lanes[v], yr));
                        _mm512_mask_storeu_epi32(yr, lanes[v], c[i][v]);
                    }
            }
        }
    }
}
