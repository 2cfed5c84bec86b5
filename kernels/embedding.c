/* embedding.c -- embedding lookups from fp32, fp16 and int8 tables, the fp32 lookup's backward (the
 * scatter-add), and the residual add (contracts in tinylm_kernels.h). */
#include <string.h>

#include "tinylm_kernels.h"

void tinylm_embedding_f32(const float *restrict table, const int32_t *restrict ids, float *restrict out,
                          size_t n, size_t C)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * C, table + (size_t)ids[i] * C, C * sizeof(float));
}

void tinylm_embedding_f16(const uint16_t *restrict table, const int32_t *restrict ids, float *restrict out,
                          size_t n, size_t C)
{
    for (size_t i = 0; i < n; i++)
        tinylm_f16_to_f32(table + (size_t)ids[i] * C, out + i * C, C);
}

void tinylm_embedding_s8(const int8_t *restrict q, const float *restrict scale, const int32_t *restrict ids,
                         float *restrict out, size_t n, size_t C, size_t group_size)
{
    const size_t G = C / group_size;
    for (size_t i = 0; i < n; i++) {
        const size_t row = (size_t)ids[i];
        tinylm_dequantize_s8(q + row * C, scale + row * G, out + i * C, 1, C, group_size);
    }
}

void tinylm_residual_add_f32(float *restrict x, const float *restrict r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] + r[i];
}

/* The backward of tinylm_embedding_f32: every row of dy goes back to the table row it was read from;
 * an id read twice gets both, added in the order of i. */
void tinylm_embedding_backward_f32(const int32_t *restrict ids, const float *restrict dy, float *restrict dtable,
                                   size_t n, size_t V, size_t C)
{
    memset(dtable, 0, V * C * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float *row = dtable + (size_t)ids[i] * C;
        const float *src = dy + i * C;
        for (size_t c = 0; c < C; c++)
            row[c] = row[c] + src[c];
    }
}
