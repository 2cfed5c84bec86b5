/* test_kernels.c -- every tinylm C kernel against vectors from the NumPy references.
 *
 * Build and run (tests/test_kernels_c.py does this, with and without SIMD, under ASan/UBSan):
 *     python tests/c/gen_vectors.py
 *     gcc -std=c99 -Wall -Wextra -Werror -Ikernels -Itests/c kernels/[a-z]*.c tests/c/test_kernels.c -o t
 *     ./t            # prints one line per kernel; exit status = number of failing kernels
 *
 * Freestanding on purpose: printf is the only library call, buffers are static and sized by the
 * macros of vectors.h, so it runs unchanged on a microcontroller (newlib + semihosting).
 * Exact kernels are compared bit for bit; the others within the bounds of tinylm_kernels.h, which
 * vectors.h carries from tinylm.kernels.reference (the tv_mm*_tol arrays, TV_*_ATOL / RTOL / ULPS).
 */
#include <stdio.h>

#include "tinylm_kernels.h"
#include "vectors.h"

#define MAX(a, b) ((a) > (b) ? (a) : (b))

static float as_f32(uint32_t u)
{
    union { uint32_t u; float f; } v;
    v.u = u;
    return v.f;
}

static uint32_t as_bits(float f)
{
    union { uint32_t u; float f; } v;
    v.f = f;
    return v.u;
}

static float absf(float f) { return f < 0.0f ? -f : f; }

static void load_f32(const uint32_t *bits, float *out, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        out[i] = as_f32(bits[i]);
}

/* The same float bits, or both NaN (a NaN's payload is not part of every contract). */
static int same_f32(float got, uint32_t want)
{
    float w = as_f32(want);
    return as_bits(got) == want || (got != got && w != w);
}

static int failures = 0;

static void report(const char *kernel, long bad, long total, const char *rule)
{
    printf("%-18s %-30s %4ld / %-5ld %s\n", kernel, rule, bad, total, bad ? "MISMATCH" : "ok");
    if (bad)
        failures++;
}

/* static buffers, sized by vectors.h */
static float in_a[MAX(MAX(TV_MM_M * TV_MM_K, TV_Q_M * TV_Q_K), MAX(TV_LIN_M * TV_LIN_K, TV_SM_ROWS * TV_SM_T))];
static float in_b[MAX(TV_MM_N * TV_MM_K, TV_CAUSAL_B * TV_CAUSAL_TQ * TV_CAUSAL_TK)];
static float in_c[MAX(TV_MM_N, TV_LIN_N * (TV_LIN_K / TV_LIN_GS))];
static float in_d[TV_LIN_N];
static float out_f[MAX(MAX(TV_MM_M * TV_MM_N, TV_Q_M * TV_Q_K), MAX(TV_SM_ROWS * TV_SM_T, TV_EXP_N))];
static float out_g[TV_Q_M * (TV_Q_K / TV_Q_GS)];
static uint16_t out_h[MAX(TV_HALF_N, TV_SM_ROWS * TV_SM_T)];
static int32_t out_i[TV_S8_M * TV_S8_N];
static int8_t out_q[MAX(TV_Q_M * TV_Q_K, TV_LIN_M * TV_LIN_K)];
static uint8_t out_u8[TV_SM8_ROWS * TV_SM8_T];

/* Each value is converted twice: in the whole array (a SIMD path's vector loop) and alone (n = 1:
 * its scalar tail, half.h's conversion). */
static void test_half(void)
{
    long bad = 0, i;
    load_f32(tv_f32_to_f16_in, in_a, TV_HALF_N);
    tinylm_f32_to_f16(in_a, out_h, TV_HALF_N);
    for (i = 0; i < TV_HALF_N; i++) {
        uint16_t one;
        tinylm_f32_to_f16(in_a + i, &one, 1);
        bad += out_h[i] != tv_f32_to_f16_out[i] || one != tv_f32_to_f16_out[i];
    }
    report("f32_to_f16", bad, TV_HALF_N, "bit-exact");

    bad = 0;
    tinylm_f16_to_f32(tv_f16_to_f32_in, out_f, TV_HALF_N);
    for (i = 0; i < TV_HALF_N; i++) {
        float one;
        tinylm_f16_to_f32(tv_f16_to_f32_in + i, &one, 1);
        bad += as_bits(out_f[i]) != tv_f16_to_f32_out[i] || as_bits(one) != tv_f16_to_f32_out[i];
    }
    report("f16_to_f32", bad, TV_HALF_N, "bit-exact");
}

static long count_outside(const float *y, const uint32_t *want, const uint32_t *tol, long n)
{
    long bad = 0, i;
    for (i = 0; i < n; i++)
        bad += !(absf(y[i] - as_f32(want[i])) <= as_f32(tol[i]));
    return bad;
}

/* matmul_nn_f32 and matmul_tn_f32 on the same vectors: w transposed to (K, N), x stacked twice (2M rows:
 * the packed path of a SIMD build as well as its few-rows loop; for tn also transposed, to (K, 2M)), the
 * bias added after; row m of y is tv_mm_y's row m % M */
static float mm_wt[TV_MM_K * TV_MM_N], mm_x2[2 * TV_MM_M * TV_MM_K], mm_y2[2 * TV_MM_M * TV_MM_N];
static float mm_x2t[TV_MM_K * 2 * TV_MM_M];

static long count_outside_stacked(void)
{
    long bad = 0, m, n;
    for (m = 0; m < 2 * TV_MM_M; m++)
        for (n = 0; n < TV_MM_N; n++)
            mm_y2[m * TV_MM_N + n] += in_c[n];
    for (m = 0; m < 2; m++)
        bad += count_outside(mm_y2 + m * TV_MM_M * TV_MM_N, tv_mm_y, tv_mm_tol, TV_MM_M * TV_MM_N);
    return bad;
}

static void test_matmul_nn_tn(void)
{
    long m, n, k;
    for (n = 0; n < TV_MM_N; n++)
        for (k = 0; k < TV_MM_K; k++)
            mm_wt[k * TV_MM_N + n] = in_b[n * TV_MM_K + k];
    for (m = 0; m < 2 * TV_MM_M * TV_MM_K; m++)
        mm_x2[m] = in_a[m % (TV_MM_M * TV_MM_K)];
    tinylm_matmul_nn_f32(mm_x2, mm_wt, mm_y2, 2 * TV_MM_M, TV_MM_N, TV_MM_K);
    report("matmul_nn_f32", count_outside_stacked(), 2 * TV_MM_M * TV_MM_N, "K*2^-23*|x||w| + |y|*2^-23");

    for (m = 0; m < 2 * TV_MM_M; m++)
        for (k = 0; k < TV_MM_K; k++)
            mm_x2t[k * 2 * TV_MM_M + m] = mm_x2[m * TV_MM_K + k];
    tinylm_matmul_tn_f32(mm_x2t, 2 * TV_MM_M, mm_wt, mm_y2, 2 * TV_MM_M, TV_MM_N, TV_MM_K);
    report("matmul_tn_f32", count_outside_stacked(), 2 * TV_MM_M * TV_MM_N, "K*2^-23*|x||w| + |y|*2^-23");
}

static void test_matmul(void)
{
    const long n = TV_MM_M * TV_MM_N;
    load_f32(tv_mm_x, in_a, TV_MM_M * TV_MM_K);
    load_f32(tv_mm_w, in_b, TV_MM_N * TV_MM_K);
    load_f32(tv_mm_b, in_c, TV_MM_N);
    tinylm_matmul_f32(in_a, in_b, in_c, out_f, TV_MM_M, TV_MM_N, TV_MM_K);
    report("matmul_f32", count_outside(out_f, tv_mm_y, tv_mm_tol, n), n, "K*2^-23*|x||w| + |y|*2^-23");
    test_matmul_nn_tn();

    tinylm_matmul_f16(tv_mmh_x, tv_mmh_w, in_c, out_f, TV_MM_M, TV_MM_N, TV_MM_K);
    report("matmul_f16", count_outside(out_f, tv_mmh_y, tv_mmh_tol, n), n, "K*2^-23*|x||w| + |y|*2^-23");
}

static void test_matmul_s8(void)
{
    long bad = 0, i;
    tinylm_matmul_s8(tv_s8_x, tv_s8_w, out_i, TV_S8_M, TV_S8_N, TV_S8_K);
    for (i = 0; i < TV_S8_M * TV_S8_N; i++)
        bad += out_i[i] != tv_s8_y[i];
    report("matmul_s8", bad, TV_S8_M * TV_S8_N, "exact");
}

static void test_quantize(void)
{
    const long n = TV_Q_M * TV_Q_K, g = TV_Q_M * (TV_Q_K / TV_Q_GS);
    long bad = 0, i;
    load_f32(tv_q_x, in_a, n);
    tinylm_quantize_s8(in_a, out_q, out_g, TV_Q_M, TV_Q_K, TV_Q_GS);
    for (i = 0; i < n; i++)
        bad += out_q[i] != tv_q_q[i];
    for (i = 0; i < g; i++)
        bad += !same_f32(out_g[i], tv_q_scale[i]);
    report("quantize_s8", bad, n + g, "bit-exact (q and scales)");

    bad = 0;
    tinylm_dequantize_s8(tv_q_q, out_g, out_f, TV_Q_M, TV_Q_K, TV_Q_GS);
    for (i = 0; i < n; i++)
        bad += !same_f32(out_f[i], tv_q_deq[i]);
    report("dequantize_s8", bad, n, "bit-exact");
}

static void test_linear_s8(void)
{
    static int8_t x_q[TV_LIN_M * TV_LIN_K];
    static float x_scale[TV_LIN_M * (TV_LIN_K / TV_LIN_GS)];
    long bad = 0, i;
    load_f32(tv_lin_x, in_a, TV_LIN_M * TV_LIN_K);
    load_f32(tv_lin_wscale, in_c, TV_LIN_N * (TV_LIN_K / TV_LIN_GS));
    load_f32(tv_lin_b, in_d, TV_LIN_N);
    tinylm_linear_s8(in_a, tv_lin_wq, in_c, in_d, out_f, x_q, x_scale,
                     TV_LIN_M, TV_LIN_N, TV_LIN_K, TV_LIN_GS);
    for (i = 0; i < TV_LIN_M * TV_LIN_N; i++)
        bad += as_bits(out_f[i]) != tv_lin_y[i];
    report("linear_s8", bad, TV_LIN_M * TV_LIN_N, "bit-exact");
}

static void test_linear_s4(void)
{
    static int8_t x_q[TV_LIN4_M * TV_LIN4_K];
    static float x_scale[TV_LIN4_M * (TV_LIN4_K / TV_LIN4_GS)];
    static float w_scale[TV_LIN4_N * (TV_LIN4_K / TV_LIN4_GS)];
    static float x[TV_LIN4_M * TV_LIN4_K], b[TV_LIN4_N], y[TV_LIN4_M * TV_LIN4_N], w[TV_LIN4_N * TV_LIN4_K];
    long bad = 0, i;
    load_f32(tv_lin4_x, x, TV_LIN4_M * TV_LIN4_K);
    load_f32(tv_lin4_wscale, w_scale, TV_LIN4_N * (TV_LIN4_K / TV_LIN4_GS));
    load_f32(tv_lin4_b, b, TV_LIN4_N);
    tinylm_linear_s4(x, tv_lin4_wq, w_scale, b, y, x_q, x_scale,
                     TV_LIN4_M, TV_LIN4_N, TV_LIN4_K, TV_LIN4_GS);
    for (i = 0; i < TV_LIN4_M * TV_LIN4_N; i++)
        bad += as_bits(y[i]) != tv_lin4_y[i];
    report("linear_s4", bad, TV_LIN4_M * TV_LIN4_N, "bit-exact");

    bad = 0;
    tinylm_dequantize_s4(tv_lin4_wq, w_scale, w, TV_LIN4_N, TV_LIN4_K, TV_LIN4_GS);
    for (i = 0; i < TV_LIN4_N * TV_LIN4_K; i++)
        bad += as_bits(w[i]) != tv_lin4_deq[i];
    report("dequantize_s4", bad, TV_LIN4_N * TV_LIN4_K, "bit-exact");
}

static long softmax_outside(const float *y, const uint32_t *want, long n)
{
    long bad = 0, i;
    for (i = 0; i < n; i++) {
        float w = as_f32(want[i]);
        bad += !(absf(y[i] - w) <= TV_SOFTMAX_F32_ATOL + TV_SOFTMAX_F32_RTOL * w);
    }
    return bad;
}

static void test_softmax(void)
{
    const long n = TV_SM_ROWS * TV_SM_T, nc = TV_CAUSAL_B * TV_CAUSAL_TQ * TV_CAUSAL_TK;
    long bad = 0, i;
    load_f32(tv_sm_x, in_a, n);
    tinylm_softmax_f32(in_a, out_f, TV_SM_ROWS, TV_SM_T, 0);
    report("softmax_f32", softmax_outside(out_f, tv_sm_y, n), n, "1e-6 + 2e-6 * y");

    load_f32(tv_smc_x, in_b, nc);
    tinylm_softmax_f32(in_b, out_f, TV_CAUSAL_B * TV_CAUSAL_TQ, TV_CAUSAL_TK, TV_CAUSAL_TQ);
    bad = softmax_outside(out_f, tv_smc_y, nc);
    for (i = 0; i < nc; i++)                       /* masked keys are exactly 0 */
        bad += tv_smc_y[i] == 0u && as_bits(out_f[i]) != 0u;
    report("softmax_f32 causal", bad, nc, "1e-6 + 2e-6 * y, mask exact");

    bad = 0;
    tinylm_softmax_f16(tv_smh_x, out_h, TV_SM_ROWS, TV_SM_T);
    for (i = 0; i < n; i++) {
        long d = (long)out_h[i] - (long)tv_smh_y[i];
        bad += d > TV_SOFTMAX_F16_ULPS || d < -TV_SOFTMAX_F16_ULPS;
    }
    report("softmax_f16", bad, n, "1 fp16 ulp");

    bad = 0;
    tinylm_softmax_s8(tv_sm8_x, out_u8, TV_SM8_ROWS, TV_SM8_T, tv_sm8_table);
    for (i = 0; i < TV_SM8_ROWS * TV_SM8_T; i++)
        bad += out_u8[i] != tv_sm8_y[i];
    report("softmax_s8", bad, TV_SM8_ROWS * TV_SM8_T, "exact");

    bad = 0;
    load_f32(tv_exp_x, in_a, TV_EXP_N);
    tinylm_exp_f32(in_a, out_f, TV_EXP_N);
    for (i = 0; i < TV_EXP_N; i++) {                 /* 1.5e-7 + rounding of the expected value */
        float w = as_f32(tv_exp_y[i]);
        bad += !(absf(out_f[i] - w) <= TV_EXP_F32_RTOL * w);
    }
    report("exp_f32", bad, TV_EXP_N, "relative 1.5e-7 (+ rounding)");
}

/* ---- x86 and AArch64 only: larger cases for the blocking of the AVX2 / AVX-512 / NEON paths ------
 * The vectors of vectors.h are small (they must fit a 512 KB board next to the kernels), and the
 * output above is what chapter 11 shows for a Cortex-M, so these cases are compiled for x86 and
 * AArch64 (tests/test_aarch64.py) only.
 * They reach more than one panel of 32 rows of w, a column block boundary (matmul_s8 packs 2300
 * columns at a time on AVX-512), more than 64 groups, M on both sides of the few-rows / packed
 * switch (6), and short last steps (K % 4, group_size % 4). The int8 kernels are checked against
 * their contract written out as plain loops, on inputs from a fixed LCG (int8 values include the
 * extremes +-127); exp_f32's SIMD lanes against its scalar tail, bit for bit. */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
#define TL_TEST_X86 1
#define BIG_M 7
#define BIG_N 37
#define BIG_K 2305
#define BIG_G 70                                        /* the most groups of a case below */
static int8_t big_x[BIG_M * BIG_K], big_w[BIG_N * BIG_K], big_xq[BIG_M * BIG_K];
static float big_xf[BIG_M * BIG_K], big_ws[BIG_N * BIG_G], big_b[BIG_N];
static float big_xs[BIG_M * BIG_G], big_xs_ref[BIG_M * BIG_G], big_y[BIG_M * BIG_N];
static int32_t big_yi[BIG_M * BIG_N];

static uint32_t lcg_state = 12345u;

static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;                              /* 24 random bits */
}

static int8_t lcg_s8(void)
{
    uint32_t r = lcg() % 263u;                          /* 8 / 263 of the values are +-127 */
    return (int8_t)(r < 4u ? 127 : r < 8u ? -127 : (int32_t)(r % 255u) - 127);
}

static float lcg_f32(float scale)                       /* uniform in (-scale, scale) */
{
    return ((float)lcg() / 8388608.0f - 1.0f) * scale;
}

static int32_t plain_dot(const int8_t *a, const int8_t *b, long n)
{
    int32_t sum = 0;
    long k;
    for (k = 0; k < n; k++)
        sum += (int32_t)a[k] * (int32_t)b[k];
    return sum;
}

/* matmul_s8 on the first M rows of big_x, K columns (row stride K), against plain_dot */
static long big_matmul_s8(long M, long N, long K)
{
    long bad = 0, m, n;
    tinylm_matmul_s8(big_x, big_w, big_yi, (size_t)M, (size_t)N, (size_t)K);
    for (m = 0; m < M; m++)
        for (n = 0; n < N; n++)
            bad += big_yi[m * N + n] != plain_dot(big_x + m * K, big_w + n * K, K);
    return bad;
}

/* linear_s8 against its contract: x quantized by tinylm_quantize_s8 (bit-exact against NumPy
 * above), exact int32 dots per group, acc = acc + (x_scale * w_scale) * (float)dot in group order,
 * then + b. w_q is big_w and w_scale big_ws with a row stride of K and G. */
static long big_linear_s8(long M, long N, long K, long gs)
{
    long G = K / gs, bad = 0, m, n, g;
    tinylm_linear_s8(big_xf, big_w, big_ws, big_b, big_y, big_xq, big_xs, (size_t)M, (size_t)N,
                     (size_t)K, (size_t)gs);
    tinylm_quantize_s8(big_xf, big_x, big_xs_ref, (size_t)M, (size_t)K, (size_t)gs);
    for (m = 0; m < M; m++)
        for (n = 0; n < N; n++) {
            float acc = 0.0f;
            for (g = 0; g < G; g++) {
                int32_t dot = plain_dot(big_x + m * K + g * gs, big_w + n * K + g * gs, gs);
                acc = acc + (big_xs_ref[m * G + g] * big_ws[n * G + g]) * (float)dot;
            }
            bad += as_bits(big_y[m * N + n]) != as_bits(acc + big_b[n]);
        }
    return bad;
}

static void big_inputs(void)
{
    long i;
    for (i = 0; i < BIG_M * BIG_K; i++) {
        big_x[i] = lcg_s8();
        big_xf[i] = lcg_f32(3.0f);
    }
    for (i = 0; i < BIG_N * BIG_K; i++)
        big_w[i] = lcg_s8();
    for (i = 0; i < BIG_N * BIG_G; i++)
        big_ws[i] = lcg_f32(0.01f) + 0.011f;            /* positive weight scales */
    for (i = 0; i < BIG_N; i++)
        big_b[i] = lcg_f32(1.0f);
}

/* K = 1, 2, 3 with 6 rows of x or more: the packed AVX-512 path reads x 4 bytes at a time, so a
 * short row must not let those reads run past the end of x. Every buffer here has exactly the size
 * the contract names (x and the workspace x_q: M * K bytes), so AddressSanitizer reports any read
 * past it. Checked against plain_dot. */
#define TINY_M 13
#define TINY_N 33
static int8_t tiny_x1[TINY_M * 1], tiny_x2[TINY_M * 2], tiny_x3[TINY_M * 3];
static int8_t tiny_xq1[TINY_M * 1], tiny_xq2[TINY_M * 2], tiny_xq3[TINY_M * 3];
static int8_t tiny_w[TINY_N * 3];
static float tiny_xf[TINY_M * 3], tiny_ws[TINY_N * 3], tiny_xs[TINY_M * 3], tiny_y[TINY_M * TINY_N];
static int32_t tiny_yi[TINY_M * TINY_N];

static long tiny_k_case(long M, long K, long gs)
{
    int8_t *const xs[3] = {tiny_x1, tiny_x2, tiny_x3}, *const xqs[3] = {tiny_xq1, tiny_xq2, tiny_xq3};
    int8_t *x = xs[K - 1], *x_q = xqs[K - 1];
    long G = K / gs, bad = 0, m, n, g, i;
    float xs_ref[TINY_M * 3];
    for (i = 0; i < M * K; i++)
        tiny_xf[i] = lcg_f32(3.0f);
    /* the last M rows of the exactly sized arrays, so that x and x_q end where their array ends */
    x += (TINY_M - M) * K;
    x_q += (TINY_M - M) * K;
    for (i = 0; i < M * K; i++)
        x[i] = lcg_s8();
    tinylm_matmul_s8(x, tiny_w, tiny_yi, (size_t)M, TINY_N, (size_t)K);
    for (m = 0; m < M; m++)
        for (n = 0; n < TINY_N; n++)
            bad += tiny_yi[m * TINY_N + n] != plain_dot(x + m * K, tiny_w + n * K, K);
    tinylm_linear_s8(tiny_xf, tiny_w, tiny_ws, NULL, tiny_y, x_q, tiny_xs, (size_t)M, TINY_N,
                     (size_t)K, (size_t)gs);
    tinylm_quantize_s8(tiny_xf, x, xs_ref, (size_t)M, (size_t)K, (size_t)gs);
    for (m = 0; m < M; m++)
        for (n = 0; n < TINY_N; n++) {
            float acc = 0.0f;
            for (g = 0; g < G; g++) {
                int32_t dot = plain_dot(x + m * K + g * gs, tiny_w + n * K + g * gs, gs);
                acc = acc + (xs_ref[m * G + g] * tiny_ws[n * G + g]) * (float)dot;
            }
            bad += as_bits(tiny_y[m * TINY_N + n]) != as_bits(acc);
        }
    return bad;
}

static void test_tiny_k(void)
{
    /* (M, K, group_size): the reads of rows M-1, M-2, M-3 are the ones that could pass the end */
    static const long cases[][3] = {{6, 1, 1}, {7, 1, 1}, {13, 1, 1}, {6, 2, 1}, {7, 2, 2},
                                    {13, 2, 1}, {6, 3, 1}, {7, 3, 3}, {13, 3, 3}};
    long bad = 0, total = 0, i;
    for (i = 0; i < TINY_N * 3; i++) {
        tiny_w[i] = lcg_s8();
        tiny_ws[i] = lcg_f32(0.01f) + 0.011f;
    }
    for (i = 0; i < (long)(sizeof cases / sizeof cases[0]); i++) {
        bad += tiny_k_case(cases[i][0], cases[i][1], cases[i][2]);
        total += 2 * cases[i][0] * TINY_N;
    }
    report("s8 K < 4, M >= 6", bad, total, "exact, no read past x");
}

static void test_x86_blocks(void)
{
    /* (M, N, K): packed with two column blocks, two panels and a 1-column last step; few rows with
     * the same; one 32-row panel exactly; 1 x 1; few rows with a short masked tail */
    static const long mm[][3] = {{7, 37, 2305}, {3, 37, 2305}, {6, 32, 64}, {1, 1, 1}, {5, 17, 63}};
    /* (M, N, K, group_size): packed with 70 groups (two chunks of up to 64) of 32 and of 3 (short
     * steps); few rows with 70 groups of 32, 2 of 128, and of 3 (the 1 x 8 path); one group per
     * row of 2305 columns (two column blocks) and of 2240; 1 x 1 */
    static const long lin[][4] = {{7, 37, 2240, 32}, {7, 37, 210, 3}, {3, 37, 2240, 32},
                                  {2, 37, 256, 128}, {3, 37, 210, 3}, {7, 37, 2305, 2305},
                                  {6, 33, 2240, 2240}, {1, 1, 1, 1}};
    static float sweep[4096 + 6], sweep_y[4096 + 6], one[1];
    long bad = 0, total = 0, i, n = 4096 + 6;
    big_inputs();
    for (i = 0; i < (long)(sizeof mm / sizeof mm[0]); i++) {
        bad += big_matmul_s8(mm[i][0], mm[i][1], mm[i][2]);
        total += mm[i][0] * mm[i][1];
    }
    report("matmul_s8 blocks", bad, total, "exact");

    bad = total = 0;
    for (i = 0; i < (long)(sizeof lin / sizeof lin[0]); i++) {
        bad += big_linear_s8(lin[i][0], lin[i][1], lin[i][2], lin[i][3]);
        total += lin[i][0] * lin[i][1];
    }
    report("linear_s8 blocks", bad, total, "bit-exact");

    bad = 0;                                        /* a call for 1 value takes the scalar tail */
    for (i = 0; i < 4096; i++)
        sweep[i] = -100.0f + 200.0f * (float)i / 4095.0f + lcg_f32(0.02f);
    sweep[4096] = as_f32(0x7fc00000u);              /* NaN */
    sweep[4097] = as_f32(0xff800000u);              /* -inf */
    sweep[4098] = as_f32(0x7f800000u);              /* +inf */
    sweep[4099] = -87.33f;
    sweep[4100] = 88.72f;
    sweep[4101] = -0.0f;
    tinylm_exp_f32(sweep, sweep_y, (size_t)n);
    for (i = 0; i < n; i++) {
        tinylm_exp_f32(sweep + i, one, 1);
        bad += !same_f32(sweep_y[i], as_bits(one[0]));
    }
    report("exp_f32 lanes", bad, n, "SIMD = scalar, bit-exact");
}
#endif

int main(void)
{
    printf("tinylm C kernel tests (build: %s)\n", tinylm_build_info());
    test_half();
    test_matmul();
    test_matmul_s8();
    test_quantize();
    test_linear_s8();
    test_linear_s4();
    test_softmax();
#ifdef TL_TEST_X86
    test_x86_blocks();
    test_tiny_k();
#endif
    printf("%s: %d kernel(s) failed\n", failures ? "FAILED" : "PASSED", failures);
    return failures;
}
