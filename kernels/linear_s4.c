/* linear_s4.c -- the int4 Linear layer: weights packed two 4-bit values per byte, activations
 * quantized to int8 at run time, int32 dots per group, float accumulation across groups. Exact (see
 * the format and the order of operations in tinylm_kernels.h, "int4 linear layer").
 *
 * Paths, all giving the portable loop's bits: on x86, whole variants of the loop over outputs
 * (simd/linear_s4_avx512.h with AVX-512 VNNI when N >= 16 and K is a multiple of 128, else
 * simd/linear_s4_avx2.h); on Arm, the portable loop with its 4-row dot product from
 * simd/linear_s4_mve.h (Helium) or simd/linear_s4_dsp.h (DSP). */
#include "tinylm_kernels.h"
#include "dot_s8.h"

/* The signed value of the low / high nibble of b, read as 4-bit two's complement: 0x9 -> -7,
 * 0xF -> -1, 0x7 -> 7. Written with masks and a subtraction, never by shifting a negative number. */
static inline int32_t tl_s4_lo(uint8_t b)
{
    return (int32_t)(b & 0x0Fu) - (int32_t)((b & 0x08u) << 1);
}

static inline int32_t tl_s4_hi(uint8_t b)
{
    return (int32_t)(b >> 4) - (int32_t)((b & 0x80u) >> 3);
}

/* sum_k a[k] * q[k] over n columns (n a multiple of 32), q packed in n / 2 bytes of w in blocks of
 * 16 bytes: byte j of a block is columns j (low nibble) and j + 16 (high). Exact int32. The reference
 * for the loops below, and their tail. */
static inline int32_t tl_dot_s4(const int8_t *a, const uint8_t *w, size_t n)
{
    int32_t sum = 0;
    size_t c, j;
    for (c = 0; c < n / 32; c++, a += 32, w += 16)
        for (j = 0; j < 16; j++)
            sum += (int32_t)a[j] * tl_s4_lo(w[j]) + (int32_t)a[j + 16] * tl_s4_hi(w[j]);
    return sum;
}

/* out[r] = tl_dot_s4(a, w + r * ldw, n) for the 4 packed rows r = 0..3 (ldw bytes apart): each pair
 * of activations is loaded once for four rows. */
static inline void tl_dot_s4_1x4(const int8_t *a, const uint8_t *w, size_t ldw, size_t n,
                                 int32_t out[4])
{
    const uint8_t *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t c, j;
    for (c = 0; c < n / 32; c++, a += 32, w0 += 16, w1 += 16, w2 += 16, w3 += 16)
        for (j = 0; j < 16; j++) {
            int32_t a0 = a[j], a1 = a[j + 16];
            s0 += a0 * tl_s4_lo(w0[j]) + a1 * tl_s4_hi(w0[j]);
            s1 += a0 * tl_s4_lo(w1[j]) + a1 * tl_s4_hi(w1[j]);
            s2 += a0 * tl_s4_lo(w2[j]) + a1 * tl_s4_hi(w2[j]);
            s3 += a0 * tl_s4_lo(w3[j]) + a1 * tl_s4_hi(w3[j]);
        }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* Column n of y for every row, one group after another in the contract's order. The last columns
 * that the blocked loops leave (N % 4 portably, N % 8 with AVX2). */
static void tl_linear_s4_column(const int8_t *restrict x_q, const float *restrict x_scale,
                                const uint8_t *restrict w_q4, const float *restrict w_scale,
                                const float *restrict b, float *restrict y,
                                size_t M, size_t N, size_t K, size_t group_size, size_t n)
{
    size_t G = K / group_size, m, g;
    for (m = 0; m < M; m++) {
        float acc = 0.0f;
        for (g = 0; g < G; g++) {
            int32_t dot = tl_dot_s4(x_q + m * K + g * group_size, w_q4 + n * (K / 2) + g * (group_size / 2),
                                    group_size);
            acc = acc + (x_scale[m * G + g] * w_scale[n * G + g]) * (float)dot;
        }
        y[m * N + n] = b ? acc + b[n] : acc;
    }
}

#if defined(__AVX2__)
#include "simd/linear_s4_avx2.h"
#if TL_S8_AVX512
#include "simd/linear_s4_avx512.h"
#endif
#elif defined(__ARM_FEATURE_MVE)
#include "simd/linear_s4_mve.h"
#elif defined(__ARM_FEATURE_DSP)
#include "simd/linear_s4_dsp.h"
#endif

/* out[r] = tl_dot_s4(a, w + r * ldw, n) for the 4 packed rows r = 0..3: the one step of the loop
 * below that an instruction set changes (Helium's VMLADAVA, the DSP's SMLAD, or plain C) */
static inline void tl_dot_s4_4rows(const int8_t *a, const uint8_t *w, size_t ldw, size_t n, int32_t out[4])
{
#if defined(__ARM_FEATURE_MVE)
    tl_dot_s4_mve_1x4(a, w, ldw, n, out);
#elif defined(__ARM_FEATURE_DSP)
    tl_dot_s4_dsp_1x4(a, w, ldw, n, out);
#else
    tl_dot_s4_1x4(a, w, ldw, n, out);
#endif
}

void tinylm_linear_s4(const float *restrict x, const uint8_t *restrict w_q4,
                      const float *restrict w_scale, const float *restrict b, float *restrict y,
                      int8_t *restrict x_q, float *restrict x_scale,
                      size_t M, size_t N, size_t K, size_t group_size)
{
    tinylm_quantize_s8(x, x_q, x_scale, M, K, group_size);   /* x_q (M, K), x_scale (M, G) */
#if TL_S8_AVX512
    if (N >= 16 && K % 128 == 0)
        tl_linear_s4_avx512(x_q, x_scale, w_q4, w_scale, b, y, M, N, K, group_size);
    else
        tl_linear_s4_avx2(x_q, x_scale, w_q4, w_scale, b, y, M, N, K, group_size);
#elif defined(__AVX2__)
    tl_linear_s4_avx2(x_q, x_scale, w_q4, w_scale, b, y, M, N, K, group_size);
#else
    /* 4 output columns at a time: 4 packed rows of w stay in cache while every row of x_q passes */
    size_t G = K / group_size, m, n0, g, j;
    for (n0 = 0; n0 + 4 <= N; n0 += 4) {
        for (m = 0; m < M; m++) {
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (g = 0; g < G; g++) {
                int32_t dot[4];
                float sx = x_scale[m * G + g];
                tl_dot_s4_4rows(x_q + m * K + g * group_size, w_q4 + n0 * (K / 2) + g * (group_size / 2),
                                K / 2, group_size, dot);
                for (j = 0; j < 4; j++)
                    acc[j] = acc[j] + (sx * w_scale[(n0 + j) * G + g]) * (float)dot[j];
            }
            for (j = 0; j < 4; j++)
                y[m * N + n0 + j] = b ? acc[j] + b[n0 + j] : acc[j];
        }
    }
    for (; n0 < N; n0++)                          /* the last N % 4 columns, one at a time */
        tl_linear_s4_column(x_q, x_scale, w_q4, w_scale, b, y, M, N, K, group_size, n0);
#endif
}

void tinylm_dequantize_s4(const uint8_t *restrict w_q4, const float *restrict w_scale,
                          float *restrict y, size_t N, size_t K, size_t group_size)
{
    size_t G = K / group_size, n, c, j;
    for (n = 0; n < N; n++)
        for (c = 0; c < K / 32; c++) {
            const uint8_t *block = w_q4 + n * (K / 2) + c * 16;     /* columns 32c .. 32c + 31 */
            float s = w_scale[n * G + (c * 32) / group_size];       /* one group: 32 divides it */
            for (j = 0; j < 16; j++) {
                y[n * K + c * 32 + j] = (float)tl_s4_lo(block[j]) * s;
                y[n * K + c * 32 + j + 16] = (float)tl_s4_hi(block[j]) * s;
            }
        }
}
