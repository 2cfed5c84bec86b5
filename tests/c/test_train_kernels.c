/* test_train_kernels.c -- training's kernels (backward passes, RMSNorm, cross-entropy, AdamW, the
 * embedding scatter-add, fused attention) against vectors from the NumPy references.
 *
 *     python tests/c/gen_train_vectors.py /tmp/tv/train_vectors.h
 *     gcc -std=c99 -Wall -Wextra -Werror -Ikernels -I/tmp/tv kernels/[a-z]*.c tests/c/test_train_kernels.c
 *
 * printf is the only library call and every buffer is static. Exit status: the number of failures.
 * Exact kernels (cross-entropy's backward, AdamW, the scatter-add) are compared bit for bit; the others
 * within the per-element tolerances the generator wrote (the bounds of tinylm_kernels.h).
 */
#include <stdio.h>

#include "train_vectors.h"
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
    printf("%-26s %-8s %4ld / %-5ld %s\n", kernel, rule, bad, total, bad ? "MISMATCH" : "ok");
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

static long count_within(const float *got, const uint32_t *want, const uint32_t *tol, size_t n)
{
    long bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !(absf(got[i] - as_f32(want[i])) <= as_f32(tol[i]));
    return bad;
}

#define NORM_N (TV_NORM_ROWS * TV_NORM_C)
#define SM_N (TV_SM_B * TV_SM_TQ * TV_SM_TK)
#define CE_NV (TV_CE_N * TV_CE_V)
static float gx[TV_GELU_N], gdy[TV_GELU_N], gdx[TV_GELU_N];
static float nx[NORM_N], nw[TV_NORM_C], ndy[NORM_N], ny[NORM_N], ndx[NORM_N], ndw[TV_NORM_C], ndb[TV_NORM_C];
static float sy[SM_N], sdy[SM_N], sdx[SM_N];
static float cz[CE_NV], cprobs[CE_NV], cnll[TV_CE_N], cdz[CE_NV];
static float ap[TV_ADAM_N], ag[TV_ADAM_N], am[TV_ADAM_N], av[TV_ADAM_N];
static float edy[TV_EMB_N * TV_EMB_C], etable[TV_EMB_V * TV_EMB_C];
#define SDPA_NQ (TV_SDPA_B * TV_SDPA_NH * TV_SDPA_TQ * TV_SDPA_HS)     /* q, y, dy, dq: (B, nh, Tq, hs) */
#define SDPA_NK (TV_SDPA_B * TV_SDPA_NH * TV_SDPA_TK * TV_SDPA_HS)     /* k, v, dk, dv: (B, nh, Tk, hs) */
#define SDPA_NP (TV_SDPA_B * TV_SDPA_NH * TV_SDPA_TQ * TV_SDPA_TK)     /* p: (B * nh, Tq, Tk) */
static float tq[SDPA_NQ], tk[SDPA_NK], tv[SDPA_NK], ty[SDPA_NQ], tdy[SDPA_NQ], tp[SDPA_NP];
static float tdq[SDPA_NQ], tdk[SDPA_NK], tdv[SDPA_NK], tscratch[(2 * TV_SDPA_TQ + TV_SDPA_HS) * TV_SDPA_TK];

int main(void)
{
    printf("tinylm training kernels, build: %s\n", tinylm_build_info());

    load(gelu_x, gx, TV_GELU_N);
    load(gelu_dy, gdy, TV_GELU_N);
    tinylm_gelu_backward_f32(gx, gdy, gdx, TV_GELU_N);
    report("gelu_backward_f32", count_within(gdx, gelu_dx, gelu_tol, TV_GELU_N), TV_GELU_N, "bound");

    load(norm_x, nx, NORM_N);
    load(norm_w, nw, TV_NORM_C);
    load(norm_dy, ndy, NORM_N);
    tinylm_layernorm_backward_f32(nx, nw, ndy, ndx, ndw, ndb, TV_NORM_ROWS, TV_NORM_C, 1e-5f);
    report("layernorm_backward dx", count_within(ndx, ln_dx, ln_dx_tol, NORM_N), NORM_N, "bound");
    report("layernorm_backward dw", count_within(ndw, ln_dw, ln_dw_tol, TV_NORM_C), TV_NORM_C, "bound");
    report("layernorm_backward db", count_within(ndb, ln_db, ln_db_tol, TV_NORM_C), TV_NORM_C, "bound");
    tinylm_rmsnorm_f32(nx, nw, ny, TV_NORM_ROWS, TV_NORM_C, 1e-5f);
    report("rmsnorm_f32", count_within(ny, rms_y, rms_y_tol, NORM_N), NORM_N, "bound");
    tinylm_rmsnorm_backward_f32(nx, nw, ndy, ndx, ndw, TV_NORM_ROWS, TV_NORM_C, 1e-5f);
    report("rmsnorm_backward dx", count_within(ndx, rms_dx, rms_dx_tol, NORM_N), NORM_N, "bound");
    report("rmsnorm_backward dw", count_within(ndw, rms_dw, rms_dw_tol, TV_NORM_C), TV_NORM_C, "bound");

    load(sm_y, sy, SM_N);
    load(sm_dy, sdy, SM_N);
    tinylm_softmax_backward_f32(sy, sdy, sdx, TV_SM_B * TV_SM_TQ, TV_SM_TK, TV_SM_TQ, 0.5f);
    report("softmax_backward_f32", count_within(sdx, sm_dx, sm_tol, SM_N), SM_N, "bound");

    load(ce_z, cz, CE_NV);
    tinylm_cross_entropy_f32(cz, ce_t, cprobs, cnll, TV_CE_N, TV_CE_V);
    report("cross_entropy_f32 probs", count_within(cprobs, ce_probs, ce_probs_tol, CE_NV), CE_NV, "bound");
    report("cross_entropy_f32 nll", count_within(cnll, ce_nll, ce_nll_tol, TV_CE_N), TV_CE_N, "bound");
    load(ce_probs, cprobs, CE_NV);               /* the backward from the reference's probs: exact */
    tinylm_cross_entropy_backward_f32(cprobs, ce_t, cdz, TV_CE_N, TV_CE_V, 1.0f / 6.0f);
    report("cross_entropy_backward", count_exact(cdz, ce_dz, CE_NV), CE_NV, "exact");

    load(adam_p, ap, TV_ADAM_N);
    load(adam_g, ag, TV_ADAM_N);
    load(adam_m, am, TV_ADAM_N);
    load(adam_v, av, TV_ADAM_N);
    tinylm_adamw_f32(ap, ag, am, av, TV_ADAM_N, TV_ADAM_DECAY, TV_ADAM_BETA1, TV_ADAM_C1, TV_ADAM_BETA2,
                     TV_ADAM_C2, TV_ADAM_EPS_HAT, TV_ADAM_STEP);
    report("adamw_f32 p", count_exact(ap, adam_p2, TV_ADAM_N), TV_ADAM_N, "exact");
    report("adamw_f32 m", count_exact(am, adam_m2, TV_ADAM_N), TV_ADAM_N, "exact");
    report("adamw_f32 v", count_exact(av, adam_v2, TV_ADAM_N), TV_ADAM_N, "exact");

    load(emb_dy, edy, TV_EMB_N * TV_EMB_C);
    tinylm_embedding_backward_f32(emb_ids, edy, etable, TV_EMB_N, TV_EMB_V, TV_EMB_C);
    report("embedding_backward_f32", count_exact(etable, emb_dtable, TV_EMB_V * TV_EMB_C), TV_EMB_V * TV_EMB_C,
           "exact");

    load(sdpa_q, tq, SDPA_NQ);
    load(sdpa_k, tk, SDPA_NK);
    load(sdpa_v, tv, SDPA_NK);
    load(sdpa_dy, tdy, SDPA_NQ);
    {
        const tinylm_strides qs = {TV_SDPA_NH * TV_SDPA_TQ * TV_SDPA_HS, TV_SDPA_TQ * TV_SDPA_HS, TV_SDPA_HS};
        const tinylm_strides ks = {TV_SDPA_NH * TV_SDPA_TK * TV_SDPA_HS, TV_SDPA_TK * TV_SDPA_HS, TV_SDPA_HS};
        const float scale = 1.0f / 4.358898944f;                       /* 1 / sqrt(19) */
        tinylm_sdpa_f32(tq, qs, tk, ks, tv, ks, ty, qs, tp, tscratch, TV_SDPA_B, TV_SDPA_NH, TV_SDPA_TQ,
                        TV_SDPA_TK, TV_SDPA_HS, 1, scale);
        report("sdpa_f32 y", count_within(ty, sdpa_y, sdpa_y_tol, SDPA_NQ), SDPA_NQ, "bound");
        report("sdpa_f32 p", count_within(tp, sdpa_p, sdpa_p_tol, SDPA_NP), SDPA_NP, "bound");
        tinylm_sdpa_backward_f32(tq, qs, tk, ks, tv, ks, tp, tdy, qs, tdq, qs, tdk, ks, tdv, ks, tscratch,
                                 TV_SDPA_B, TV_SDPA_NH, TV_SDPA_TQ, TV_SDPA_TK, TV_SDPA_HS, 1, scale);
        report("sdpa_backward_f32 dq", count_within(tdq, sdpa_dq, sdpa_dq_tol, SDPA_NQ), SDPA_NQ, "bound");
        report("sdpa_backward_f32 dk", count_within(tdk, sdpa_dk, sdpa_dk_tol, SDPA_NK), SDPA_NK, "bound");
        report("sdpa_backward_f32 dv", count_within(tdv, sdpa_dv, sdpa_dv_tol, SDPA_NK), SDPA_NK, "bound");
    }

    printf("%s: %d kernel(s) failed\n", failures ? "FAILED" : "PASSED", failures);
    return failures;
}
