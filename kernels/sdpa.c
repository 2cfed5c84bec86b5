/* sdpa.c -- scaled dot-product attention for training: the forward (y and the saved probabilities P)
 * and the backward (dq, dk, dv), one head at a time, on operands seen through strides. Contract:
 * tinylm_kernels.h ("fused attention for training"). The softmax and its backward are softmax.c's.
 *
 * Both passes are made of three matrix products of one head, the portable loops below:
 *     scores:  out[i, j] = a[i] . b[j]                 S = q k^T,  dP = dy v^T
 *     mix:     out[i]    = sum_j w[i, j] b[j]          y = P v,    dq = dS k
 *     mix_t:   out[j]    = sum_i w[i, j] a[i]          dv = P^T dy, dk = dS^T q
 * where a row a[i] is the hs values of position i of an operand. With a causal mask, row i of S only
 * needs the keys j < visible(i) = i + (Tk - Tq) + 1; the probabilities past it are 0, so the loops stop
 * there instead of multiplying by zeros.
 */
#include "tinylm_kernels.h"

/* how many keys query i sees */
static inline size_t tl_sdpa_visible(size_t i, size_t Tq, size_t Tk, int causal)
{
    return causal ? i + (Tk - Tq) + 1 : Tk;
}

/* the first operand of head (b, h): where its element (b, h, 0, 0) is */
static inline size_t tl_sdpa_head(tinylm_strides s, size_t b, size_t h)
{
    return b * s.batch + h * s.head;
}

#if defined(__AVX512F__)
#include "simd/sdpa_avx512.h"
#else
#include "dot_f32.h"

/* out (Tq, Tk) = (a b^T) * scale for the visible entries: a (Tq, hs), b (Tk, hs) rows `arow`, `brow` apart */
static void tl_sdpa_scores(const float *restrict a, size_t arow, const float *restrict b, size_t brow,
                           float *restrict out, size_t Tq, size_t Tk, size_t hs, int causal, float scale)
{
    for (size_t i = 0; i < Tq; i++) {
        const size_t visible = tl_sdpa_visible(i, Tq, Tk, causal);
        for (size_t j = 0; j < visible; j++)
            out[i * Tk + j] = tl_dot_f32(a + i * arow, b + j * brow, hs) * scale;
    }
}

/* out (Tq, hs) = w (Tq, Tk) b (Tk, hs): row i sums its visible keys, j ascending */
static void tl_sdpa_mix(const float *restrict w, const float *restrict b, size_t brow, float *restrict out,
                        size_t orow, size_t Tq, size_t Tk, size_t hs, int causal)
{
    for (size_t i = 0; i < Tq; i++) {
        float *o = out + i * orow;
        for (size_t c = 0; c < hs; c++)
            o[c] = 0.0f;
        const size_t visible = tl_sdpa_visible(i, Tq, Tk, causal);
        for (size_t j = 0; j < visible; j++) {
            const float wij = w[i * Tk + j];
            const float *bj = b + j * brow;
            for (size_t c = 0; c < hs; c++)
                o[c] += wij * bj[c];
        }
    }
}

/* out (Tk, hs) = w (Tq, Tk)^T a (Tq, hs): row j sums the queries that see key j, i ascending */
static void tl_sdpa_mix_t(const float *restrict w, const float *restrict a, size_t arow, float *restrict out,
                          size_t orow, size_t Tq, size_t Tk, size_t hs, int causal)
{
    for (size_t j = 0; j < Tk; j++)
        for (size_t c = 0; c < hs; c++)
            out[j * orow + c] = 0.0f;
    for (size_t i = 0; i < Tq; i++) {
        const float *ai = a + i * arow;
        const size_t visible = tl_sdpa_visible(i, Tq, Tk, causal);
        for (size_t j = 0; j < visible; j++) {
            const float wij = w[i * Tk + j];
            float *o = out + j * orow;
            for (size_t c = 0; c < hs; c++)
                o[c] += wij * ai[c];
        }
    }
}
#endif

void tinylm_sdpa_f32(const float *restrict q, tinylm_strides qs, const float *restrict k, tinylm_strides ks,
                     const float *restrict v, tinylm_strides vs, float *restrict y, tinylm_strides ys,
                     float *restrict p, float *restrict scratch,
                     size_t B, size_t n_head, size_t Tq, size_t Tk, size_t hs, int causal, float scale)
{
#if defined(__AVX512F__)
    tl_sdpa_f32_avx512(q, qs, k, ks, v, vs, y, ys, p, scratch, B, n_head, Tq, Tk, hs, causal, scale);
#else
    float *s = scratch;                                  /* (Tq, Tk) scores of one head */
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < n_head; h++) {
            float *ph = p + (b * n_head + h) * Tq * Tk;  /* (Tq, Tk) */
            tl_sdpa_scores(q + tl_sdpa_head(qs, b, h), qs.row, k + tl_sdpa_head(ks, b, h), ks.row, s,
                           Tq, Tk, hs, causal, scale);                       /* S = q k^T * scale */
            tinylm_softmax_f32(s, ph, Tq, Tk, causal ? Tq : 0);             /* P = softmax(S) */
            tl_sdpa_mix(ph, v + tl_sdpa_head(vs, b, h), vs.row, y + tl_sdpa_head(ys, b, h), ys.row,
                        Tq, Tk, hs, causal);                                 /* y = P v */
        }
#endif
}

void tinylm_sdpa_backward_f32(const float *restrict q, tinylm_strides qs, const float *restrict k,
                              tinylm_strides ks, const float *restrict v, tinylm_strides vs,
                              const float *restrict p, const float *restrict dy, tinylm_strides dys,
                              float *restrict dq, tinylm_strides dqs, float *restrict dk, tinylm_strides dks,
                              float *restrict dv, tinylm_strides dvs, float *restrict scratch,
                              size_t B, size_t n_head, size_t Tq, size_t Tk, size_t hs, int causal, float scale)
{
#if defined(__AVX512F__)
    tl_sdpa_backward_f32_avx512(q, qs, k, ks, v, vs, p, dy, dys, dq, dqs, dk, dks, dv, dvs, scratch,
                                B, n_head, Tq, Tk, hs, causal, scale);
#else
    float *dp = scratch;                                 /* (Tq, Tk) gradient of P */
    float *ds = scratch + Tq * Tk;                       /* (Tq, Tk) gradient of S */
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < n_head; h++) {
            const float *ph = p + (b * n_head + h) * Tq * Tk;                /* (Tq, Tk) */
            const float *qh = q + tl_sdpa_head(qs, b, h), *kh = k + tl_sdpa_head(ks, b, h);
            const float *dyh = dy + tl_sdpa_head(dys, b, h);
            tl_sdpa_mix_t(ph, dyh, dys.row, dv + tl_sdpa_head(dvs, b, h), dvs.row,
                          Tq, Tk, hs, causal);                               /* dv = P^T dy */
            tl_sdpa_scores(dyh, dys.row, v + tl_sdpa_head(vs, b, h), vs.row, dp,
                           Tq, Tk, hs, causal, 1.0f);                        /* dP = dy v^T */
            tinylm_softmax_backward_f32(ph, dp, ds, Tq, Tk, causal ? Tq : 0, scale);  /* dS, times scale */
            tl_sdpa_mix(ds, kh, ks.row, dq + tl_sdpa_head(dqs, b, h), dqs.row, Tq, Tk, hs, causal);  /* dq = dS k */
            tl_sdpa_mix_t(ds, qh, qs.row, dk + tl_sdpa_head(dks, b, h), dks.row,
                          Tq, Tk, hs, causal);                               /* dk = dS^T q */
        }
#endif
}
