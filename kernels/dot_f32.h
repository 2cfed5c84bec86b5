/* dot_f32.h -- the fp32 dot product the float kernels share (attention.c, softmax.c, sdpa.c).
 *
 * a . b over n floats in 8 interleaved partial sums (i = j mod 8), added pairwise, then the tail one by
 * one: a fixed order, so every kernel that calls it rounds the same way on every target.
 */
#ifndef TINYLM_DOT_F32_H
#define TINYLM_DOT_F32_H

#include <stddef.h>

static inline float tl_dot_f32(const float *restrict a, const float *restrict b, size_t n)
{
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++)
            acc[j] += a[i + j] * b[i + j];
    float dot = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++)
        dot += a[i] * b[i];
    return dot;
}

#endif /* TINYLM_DOT_F32_H */
