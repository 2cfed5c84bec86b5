/* attention.c -- tinylm_attention_f32: one new token's multi-head attention over a KV cache
 * (contract in tinylm_kernels.h). The softmax is tinylm_softmax_f32 (softmax.c).
 */
#include "tinylm_kernels.h"
#include "dot_f32.h"

void tinylm_attention_f32(const float *restrict q, const float *restrict k, const float *restrict v,
                          float *restrict y, float *restrict scratch, size_t n_head, size_t head_size,
                          size_t T, size_t stride, float scale)
{
    float *s = scratch;          /* (T,) scores of one head */
    float *p = scratch + T;      /* (T,) their softmax */
    for (size_t h = 0; h < n_head; h++) {
        const float *qh = q + h * head_size;
        for (size_t t = 0; t < T; t++) {                /* s = q_h . k_t,h * scale */
            const float *kt = k + t * stride + h * head_size;
            s[t] = tl_dot_f32(qh, kt, head_size) * scale;
        }
        tinylm_softmax_f32(s, p, 1, T, 0);
        float *yh = y + h * head_size;
        for (size_t i = 0; i < head_size; i++)
            yh[i] = 0.0f;
        for (size_t t = 0; t < T; t++) {                /* y_h = sum_t p_t v_t,h */
            const float *vt = v + t * stride + h * head_size;
            const float pt = p[t];
            for (size_t i = 0; i < head_size; i++)
                yh[i] += pt * vt[i];
        }
    }
}
