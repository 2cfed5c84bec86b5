/* simd/sdpa_avx512.h -- tinylm_sdpa_f32 and tinylm_sdpa_backward_f32 with AVX-512F. Included by sdpa.c,
 * whose portable loops (scores, mix, mix_t) these follow; the softmax and its backward stay softmax.c's.
 *
 * Tuned for the small heads of a training step (hs 32..128, T 64..1024): every product works on a
 * block of 4 rows by 32 columns, 8 accumulators of 16 lanes, so each vector loaded from memory feeds 4
 * fused multiply-adds. A head's operands (T rows of hs floats: 8 KB for T = 64, hs = 32) stay in L1.
 *   scores: vectorised over keys. The head's keys (or values) are first transposed into scratch,
 *           bT (hs, Tk), so that S[i, j..j+31] = sum_d a[i, d] * bT[d, j..j+31]: one broadcast of
 *           a[i, d] per row and two loads of bT per d.
 *   mix, mix_t: vectorised over hs, 32 columns at a time (a lane mask past hs): a row of b (or a) is
 *           loaded once and multiplied by the broadcast weights of 4 rows.
 * The sums run in another order than the portable C and fuse multiply-adds: the results are within the
 * contract's bound of each other, not bit for bit. Rows past the end of a block of 4 (Tq or Tk not a
 * multiple of 4) repeat the block's first row, so every load stays inside the operands; they are not stored.
 */
#include <immintrin.h>

/* lanes of the 16-column vector starting at column c that lie before column n (0 when c >= n) */
static inline __mmask16 tl_sdpa_avx512_lanes(size_t c, size_t n)
{
    return c >= n ? (__mmask16)0 : n - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - c)) - 1u);
}

/* r[i] = row i0 + i of `base` (rows `stride` apart) for the 4 rows of a block; rows past its end (when
 * it has fewer than 4) point at its first row again, so every load stays inside the operand */
static inline void tl_sdpa_avx512_rows4(const float *base, size_t stride, size_t i0, size_t rows,
                                        const float *r[4])
{
    for (size_t i = 0; i < 4; i++)
        r[i] = base + (i0 + (i < rows ? i : 0)) * stride;
}

/* bT (hs, Tk) = b (Tk, hs) rows `brow` apart, transposed */
static void tl_sdpa_avx512_transpose(const float *restrict b, size_t brow, float *restrict bT, size_t Tk,
                                     size_t hs)
{
    for (size_t d = 0; d < hs; d++)
        for (size_t j = 0; j < Tk; j++)
            bT[d * Tk + j] = b[j * brow + d];
}

/* The 4 x 32 block every product below accumulates: s<row><half>, 8 vectors of 16 lanes, set to zero,
 * then per step 4 broadcast values (one per row) times the same 2 vectors (columns c..c+15, c+16..c+31) */
#define TL_SDPA_AVX512_ZERO4                                                                \
    __m512 s00 = _mm512_setzero_ps(), s01 = _mm512_setzero_ps(), s10 = _mm512_setzero_ps(); \
    __m512 s11 = _mm512_setzero_ps(), s20 = _mm512_setzero_ps(), s21 = _mm512_setzero_ps(); \
    __m512 s30 = _mm512_setzero_ps(), s31 = _mm512_setzero_ps()

#define TL_SDPA_AVX512_FMA4(x0, x1, x2, x3, v0, v1)                                        \
    do {                                                                                   \
        __m512 x_ = _mm512_set1_ps(x0);                                                    \
        s00 = _mm512_fmadd_ps(x_, v0, s00);                                                \
        s01 = _mm512_fmadd_ps(x_, v1, s01);                                                \
        x_ = _mm512_set1_ps(x1);                                                           \
        s10 = _mm512_fmadd_ps(x_, v0, s10);                                                \
        s11 = _mm512_fmadd_ps(x_, v1, s11);                                                \
        x_ = _mm512_set1_ps(x2);                                                           \
        s20 = _mm512_fmadd_ps(x_, v0, s20);                                                \
        s21 = _mm512_fmadd_ps(x_, v1, s21);                                                \
        x_ = _mm512_set1_ps(x3);                                                           \
        s30 = _mm512_fmadd_ps(x_, v0, s30);                                                \
        s31 = _mm512_fmadd_ps(x_, v1, s31);                                                \
    } while (0)

/* out (Tq, Tk) = (a bT) * scale, a (Tq, hs) rows `arow` apart, bT (hs, Tk): for each block of 4 query rows,
 * the keys the last of them sees (the others' extra entries are scratch the softmax does not read) */
static void tl_sdpa_avx512_scores(const float *restrict a, size_t arow, const float *restrict bT,
                                  float *restrict out, size_t Tq, size_t Tk, size_t hs, int causal, float scale)
{
    const __m512 vscale = _mm512_set1_ps(scale);
    for (size_t i0 = 0; i0 < Tq; i0 += 4) {
        const size_t rows = Tq - i0 < 4 ? Tq - i0 : 4;
        const size_t visible = tl_sdpa_visible(i0 + rows - 1, Tq, Tk, causal);
        const float *ar[4];
        tl_sdpa_avx512_rows4(a, arow, i0, rows, ar);
        for (size_t j = 0; j < visible; j += 32) {
            const __mmask16 m0 = tl_sdpa_avx512_lanes(j, visible), m1 = tl_sdpa_avx512_lanes(j + 16, visible);
            TL_SDPA_AVX512_ZERO4;
            for (size_t d = 0; d < hs; d++) {
                const __m512 b0 = _mm512_maskz_loadu_ps(m0, bT + d * Tk + j);
                const __m512 b1 = _mm512_maskz_loadu_ps(m1, bT + d * Tk + j + 16);
                TL_SDPA_AVX512_FMA4(ar[0][d], ar[1][d], ar[2][d], ar[3][d], b0, b1);
            }
            float *o = out + i0 * Tk + j;
            _mm512_mask_storeu_ps(o, m0, _mm512_mul_ps(s00, vscale));
            _mm512_mask_storeu_ps(o + 16, m1, _mm512_mul_ps(s01, vscale));
            if (rows > 1) {
                _mm512_mask_storeu_ps(o + Tk, m0, _mm512_mul_ps(s10, vscale));
                _mm512_mask_storeu_ps(o + Tk + 16, m1, _mm512_mul_ps(s11, vscale));
            }
            if (rows > 2) {
                _mm512_mask_storeu_ps(o + 2 * Tk, m0, _mm512_mul_ps(s20, vscale));
                _mm512_mask_storeu_ps(o + 2 * Tk + 16, m1, _mm512_mul_ps(s21, vscale));
            }
            if (rows > 3) {
                _mm512_mask_storeu_ps(o + 3 * Tk, m0, _mm512_mul_ps(s30, vscale));
                _mm512_mask_storeu_ps(o + 3 * Tk + 16, m1, _mm512_mul_ps(s31, vscale));
            }
        }
    }
}

/* 4 rows of `out` (rows `orow` apart; only the first `rows` stored), columns c..c+31 under masks m0, m1,
 * from accumulators s<row><half> */
#define TL_SDPA_AVX512_STORE4(out, orow, rows, c, m0, m1)                                  \
    do {                                                                                   \
        _mm512_mask_storeu_ps((out) + (c), m0, s00);                                      \
        _mm512_mask_storeu_ps((out) + (c) + 16, m1, s01);                                 \
        if ((rows) > 1) {                                                                  \
            _mm512_mask_storeu_ps((out) + (orow) + (c), m0, s10);                         \
            _mm512_mask_storeu_ps((out) + (orow) + (c) + 16, m1, s11);                    \
        }                                                                                  \
        if ((rows) > 2) {                                                                  \
            _mm512_mask_storeu_ps((out) + 2 * (orow) + (c), m0, s20);                     \
            _mm512_mask_storeu_ps((out) + 2 * (orow) + (c) + 16, m1, s21);                \
        }                                                                                  \
        if ((rows) > 3) {                                                                  \
            _mm512_mask_storeu_ps((out) + 3 * (orow) + (c), m0, s30);                     \
            _mm512_mask_storeu_ps((out) + 3 * (orow) + (c) + 16, m1, s31);                \
        }                                                                                  \
    } while (0)

/* out (Tq, hs) = w (Tq, Tk) b (Tk, hs), b rows `brow` apart: 4 query rows at a time, over the keys the
 * last of them sees (w is 0 past each row's own: the softmax and its backward write those zeros) */
static void tl_sdpa_avx512_mix(const float *restrict w, const float *restrict b, size_t brow,
                               float *restrict out, size_t orow, size_t Tq, size_t Tk, size_t hs, int causal)
{
    for (size_t i0 = 0; i0 < Tq; i0 += 4) {
        const size_t rows = Tq - i0 < 4 ? Tq - i0 : 4;
        const size_t visible = tl_sdpa_visible(i0 + rows - 1, Tq, Tk, causal);
        const float *wr[4];
        tl_sdpa_avx512_rows4(w, Tk, i0, rows, wr);
        for (size_t c = 0; c < hs; c += 32) {
            const __mmask16 m0 = tl_sdpa_avx512_lanes(c, hs), m1 = tl_sdpa_avx512_lanes(c + 16, hs);
            TL_SDPA_AVX512_ZERO4;
            for (size_t j = 0; j < visible; j++) {
                const __m512 b0 = _mm512_maskz_loadu_ps(m0, b + j * brow + c);
                const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + j * brow + c + 16);
                TL_SDPA_AVX512_FMA4(wr[0][j], wr[1][j], wr[2][j], wr[3][j], b0, b1);
            }
            TL_SDPA_AVX512_STORE4(out + i0 * orow, orow, rows, c, m0, m1);
        }
    }
}

/* out (Tk, hs) = w (Tq, Tk)^T a (Tq, hs), a rows `arow` apart: 4 keys at a time, over the queries that
 * see the first of them (the others' extra weights are 0) */
static void tl_sdpa_avx512_mix_t(const float *restrict w, const float *restrict a, size_t arow,
                                 float *restrict out, size_t orow, size_t Tq, size_t Tk, size_t hs, int causal)
{
    for (size_t j0 = 0; j0 < Tk; j0 += 4) {
        const size_t keys = Tk - j0 < 4 ? Tk - j0 : 4;
        /* query i sees key j0 when j0 <= i + (Tk - Tq) */
        const size_t first = causal && j0 > Tk - Tq ? j0 - (Tk - Tq) : 0;
        const size_t j1 = j0 + (keys > 1), j2 = j0 + (keys > 2) * 2, j3 = j0 + (keys > 3) * 3;
        for (size_t c = 0; c < hs; c += 32) {
            const __mmask16 m0 = tl_sdpa_avx512_lanes(c, hs), m1 = tl_sdpa_avx512_lanes(c + 16, hs);
            TL_SDPA_AVX512_ZERO4;
            for (size_t i = first; i < Tq; i++) {
                const __m512 a0 = _mm512_maskz_loadu_ps(m0, a + i * arow + c);
                const __m512 a1 = _mm512_maskz_loadu_ps(m1, a + i * arow + c + 16);
                const float *wi = w + i * Tk;
                TL_SDPA_AVX512_FMA4(wi[j0], wi[j1], wi[j2], wi[j3], a0, a1);
            }
            TL_SDPA_AVX512_STORE4(out + j0 * orow, orow, keys, c, m0, m1);
        }
    }
}

#undef TL_SDPA_AVX512_STORE4
#undef TL_SDPA_AVX512_FMA4
#undef TL_SDPA_AVX512_ZERO4

static void tl_sdpa_f32_avx512(const float *restrict q, tinylm_strides qs, const float *restrict k,
                               tinylm_strides ks, const float *restrict v, tinylm_strides vs,
                               float *restrict y, tinylm_strides ys, float *restrict p, float *restrict scratch,
                               size_t B, size_t n_head, size_t Tq, size_t Tk, size_t hs, int causal, float scale)
{
    float *s = scratch;                                  /* (Tq, Tk) scores of one head */
    float *kT = scratch + Tq * Tk;                       /* (hs, Tk) its keys, transposed */
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < n_head; h++) {
            float *ph = p + (b * n_head + h) * Tq * Tk;  /* (Tq, Tk) */
            tl_sdpa_avx512_transpose(k + tl_sdpa_head(ks, b, h), ks.row, kT, Tk, hs);
            tl_sdpa_avx512_scores(q + tl_sdpa_head(qs, b, h), qs.row, kT, s, Tq, Tk, hs, causal, scale);
            tinylm_softmax_f32(s, ph, Tq, Tk, causal ? Tq : 0);
            tl_sdpa_avx512_mix(ph, v + tl_sdpa_head(vs, b, h), vs.row, y + tl_sdpa_head(ys, b, h), ys.row,
                               Tq, Tk, hs, causal);
        }
}

static void tl_sdpa_backward_f32_avx512(const float *restrict q, tinylm_strides qs, const float *restrict k,
                                        tinylm_strides ks, const float *restrict v, tinylm_strides vs,
                                        const float *restrict p, const float *restrict dy, tinylm_strides dys,
                                        float *restrict dq, tinylm_strides dqs, float *restrict dk,
                                        tinylm_strides dks, float *restrict dv, tinylm_strides dvs,
                                        float *restrict scratch, size_t B, size_t n_head, size_t Tq, size_t Tk,
                                        size_t hs, int causal, float scale)
{
    float *dp = scratch;                                 /* (Tq, Tk) gradient of P */
    float *ds = scratch + Tq * Tk;                       /* (Tq, Tk) gradient of S */
    float *vT = scratch + 2 * Tq * Tk;                   /* (hs, Tk) the head's values, transposed */
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < n_head; h++) {
            const float *ph = p + (b * n_head + h) * Tq * Tk;                /* (Tq, Tk) */
            const float *dyh = dy + tl_sdpa_head(dys, b, h);
            tl_sdpa_avx512_mix_t(ph, dyh, dys.row, dv + tl_sdpa_head(dvs, b, h), dvs.row,
                                 Tq, Tk, hs, causal);                        /* dv = P^T dy */
            tl_sdpa_avx512_transpose(v + tl_sdpa_head(vs, b, h), vs.row, vT, Tk, hs);
            tl_sdpa_avx512_scores(dyh, dys.row, vT, dp, Tq, Tk, hs, causal, 1.0f);   /* dP = dy v^T */
            tinylm_softmax_backward_f32(ph, dp, ds, Tq, Tk, causal ? Tq : 0, scale);  /* dS, times scale */
            tl_sdpa_avx512_mix(ds, k + tl_sdpa_head(ks, b, h), ks.row, dq + tl_sdpa_head(dqs, b, h), dqs.row,
                               Tq, Tk, hs, causal);                          /* dq = dS k */
            tl_sdpa_avx512_mix_t(ds, q + tl_sdpa_head(qs, b, h), qs.row, dk + tl_sdpa_head(dks, b, h), dks.row,
                                 Tq, Tk, hs, causal);                        /* dk = dS^T q */
        }
}
