/* test_runtime_kernels.c -- the C runtime's kernels against vectors from the NumPy references.
 *
 *     python tests/c/gen_runtime_vectors.py /tmp/rv/runtime_vectors.h
 *     gcc -std=c99 -Wall -Wextra -Werror -Ikernels -I/tmp/rv kernels/[a-z]*.c tests/c/test_runtime_kernels.c
 *
 * printf is the only library call and every buffer is static, so it runs unchanged on an emulated
 * Cortex-M (tests/test_kernels_runtime.py runs it there too). Exit status: the number of failures.
 * Exact kernels (embedding lookups, residual add) are compared bit for bit; layer norm, GELU and
 * attention within the per-element tolerances the generator wrote (the bounds of tinylm_kernels.h).
 */
#include <stdio.h>

#include "runtime_vectors.h"
#include "tinylm_kernels.h"

static float as_f32(uint32_t u) { union { uint32_t u; float f; } v; v.u = u; return v.f; }
static uint32_t as_bits(float f) { union { uint32_t u; float f; } v; v.f = f; return v.u; }
static float absf(float f) { return f < 0.0f ? -f : f; }

static void load(const uint32_t *b, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = as_f32(b[i]);
}

static int failures = 0;

static void report(const char *kernel, long bad, long total, const char *rule)
{
    printf("%-22s %-14s %4ld / %-5ld %s\n", kernel, rule, bad, total, bad ? "MISMATCH" : "ok");
    if (bad)
        failures++;
}

static long count_exact(const float *got, const uint32_t *want, size_t n)
{
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += as_bits(got[i]) != want[i];
    return bad;
}

static long count_within(const float *got, const uint32_t *want, const uint32_t *tol, float one_tol, size_t n)
{
    long bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float t = tol ? as_f32(tol[i]) : one_tol;
        bad += !(absf(got[i] - as_f32(want[i])) <= t);
    }
    return bad;
}

#define LN_N (TV_LN_ROWS * TV_LN_C)
#define EMB_N (TV_EMB_N * TV_EMB_C)
#define ATT_C (TV_ATT_NH * TV_ATT_HS)
static float a[LN_N], w[TV_LN_C], b[TV_LN_C], y[LN_N];
static float g[TV_GELU_N], gy[TV_GELU_N];
static float table[TV_EMB_V * TV_EMB_C], scale[TV_EMB_V * (TV_EMB_C / TV_EMB_GS)], e[EMB_N];
static float q[ATT_C], k[TV_ATT_T * ATT_C], v[TV_ATT_T * ATT_C], o[ATT_C], scratch[2 * TV_ATT_T];

int main(void)
{
    printf("tinylm runtime kernels, build: %s\n", tinylm_build_info());

    load(ln_x, a, LN_N);
    load(ln_w, w, TV_LN_C);
    load(ln_b, b, TV_LN_C);
    tinylm_layernorm_f32(a, w, b, y, TV_LN_ROWS, TV_LN_C, 1e-5f);
    report("layernorm_f32", count_within(y, ln_y, ln_tol, 0.0f, LN_N), LN_N, "1e-5(1+|y|)");

    load(gelu_x, g, TV_GELU_N);
    tinylm_gelu_f32(g, gy, TV_GELU_N);
    report("gelu_f32", count_within(gy, gelu_y, gelu_tol, 0.0f, TV_GELU_N), TV_GELU_N, "1e-6|y|");

    load(emb_table, table, TV_EMB_V * TV_EMB_C);
    tinylm_embedding_f32(table, emb_ids, e, TV_EMB_N, TV_EMB_C);
    report("embedding_f32", count_exact(e, emb_y_f32, EMB_N), EMB_N, "exact");
    tinylm_embedding_f16(emb_h, emb_ids, e, TV_EMB_N, TV_EMB_C);
    report("embedding_f16", count_exact(e, emb_y_f16, EMB_N), EMB_N, "exact");
    load(emb_scale, scale, TV_EMB_V * (TV_EMB_C / TV_EMB_GS));
    tinylm_embedding_s8(emb_q, scale, emb_ids, e, TV_EMB_N, TV_EMB_C, TV_EMB_GS);
    report("embedding_s8", count_exact(e, emb_y_s8, EMB_N), EMB_N, "exact");
    tinylm_residual_add_f32(table, table + TV_EMB_C, TV_EMB_C);      /* row 0 += row 1 */
    report("residual_add_f32", count_exact(table, add_y, TV_EMB_C), TV_EMB_C, "exact");

    load(att_q, q, ATT_C);
    load(att_k, k, TV_ATT_T * ATT_C);
    load(att_v, v, TV_ATT_T * ATT_C);
    tinylm_attention_f32(q, k, v, o, scratch, TV_ATT_NH, TV_ATT_HS, TV_ATT_T, ATT_C, as_f32(TV_ATT_SCALE_BITS));
    report("attention_f32", count_within(o, att_y, NULL, as_f32(TV_ATT_TOL_BITS), ATT_C), ATT_C, "1e-5(1+max|v|)");

    printf("%s: %d kernel(s) failed\n", failures ? "FAILED" : "PASSED", failures);
    return failures;
}
