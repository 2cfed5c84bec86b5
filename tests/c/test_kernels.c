/* test_kernels.c -- every tinylm C kernel against vectors from the NumPy references.
 *
 * Build and run (tests/test_kernels_c.py does this, with and without SIMD, under ASan/UBSan):
 *     python tests/c/gen_vectors.py
 *     gcc -std=c99 -Wall -Wextra -Werror -Ikernels -Itests/c kernels/[a-z]*.c tests/c/test_kernels.c -o t
 *     ./t            # prints one line per kernel; exit status = number of failing kernels
 *
 * Freestanding on purpose: printf is the only library call, buffers are static and sized by the
 * macros of vectors.h, so it runs unchanged on a microcontroller (newlib + semihosting).
 * Exact kernels are compared bit for bit; the others within the bounds of tinylm_kernels.h.
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

static void test_half(void)
{
    long bad = 0, i;
    load_f32(tv_f32_to_f16_in, in_a, TV_HALF_N);
    tinylm_f32_to_f16(in_a, out_h, TV_HALF_N);
    for (i = 0; i < TV_HALF_N; i++)
        bad += out_h[i] != tv_f32_to_f16_out[i];
    report("f32_to_f16", bad, TV_HALF_N, "bit-exact");

    bad = 0;
    tinylm_f16_to_f32(tv_f16_to_f32_in, out_f, TV_HALF_N);
    for (i = 0; i < TV_HALF_N; i++)
        bad += as_bits(out_f[i]) != tv_f16_to_f32_out[i];
    report("f16_to_f32", bad, TV_HALF_N, "bit-exact");
}

static long count_outside(const float *y, const uint32_t *want, const uint32_t *tol, long n)
{
    long bad = 0, i;
    for (i = 0; i < n; i++)
        bad += !(absf(y[i] - as_f32(want[i])) <= as_f32(tol[i]));
    return bad;
}

static void test_matmul(void)
{
    const long n = TV_MM_M * TV_MM_N;
    load_f32(tv_mm_x, in_a, TV_MM_M * TV_MM_K);
    load_f32(tv_mm_w, in_b, TV_MM_N * TV_MM_K);
    load_f32(tv_mm_b, in_c, TV_MM_N);
    tinylm_matmul_f32(in_a, in_b, in_c, out_f, TV_MM_M, TV_MM_N, TV_MM_K);
    report("matmul_f32", count_outside(out_f, tv_mm_y, tv_mm_tol, n), n, "K*2^-23*|x||w| + |y|*2^-23");

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

static long softmax_outside(const float *y, const uint32_t *want, long n)
{
    long bad = 0, i;
    for (i = 0; i < n; i++) {
        float w = as_f32(want[i]);
        bad += !(absf(y[i] - w) <= 1e-6f + 2e-6f * w);
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
        bad += d > 1 || d < -1;
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
        bad += !(absf(out_f[i] - w) <= 2.2e-7f * w);
    }
    report("exp_f32", bad, TV_EXP_N, "relative 1.5e-7 (+ rounding)");
}

int main(void)
{
    printf("tinylm C kernel tests (build: %s)\n", tinylm_build_info());
    test_half();
    test_matmul();
    test_matmul_s8();
    test_quantize();
    test_linear_s8();
    test_softmax();
    printf("%s: %d kernel(s) failed\n", failures ? "FAILED" : "PASSED", failures);
    return failures;
}
