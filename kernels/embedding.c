/* embedding.c -- embedding lookups from fp32, fp16 and int8 tables (contract in tinylm_kernels.h). */
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
