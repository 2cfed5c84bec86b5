/* layernorm.c -- LayerNorm and RMSNorm over the last axis, forward and backward (contracts in
 * tinylm_kernels.h).
 *
 * No libm: the square root is tl_sqrt_newton (newton_sqrt.h), taken in double precision and rounded
 * to float. The backward passes recompute each row's mean and rstd exactly as the forward does (one
 * pass over C values, cheaper than keeping them).
 */
#include "tinylm_kernels.h"
#include "newton_sqrt.h"

#if defined(__AVX2__)
#include "simd/layernorm_avx2.h"
#endif

/* sum of (x[i] - shift), or of its square, over n floats in 8 interleaved partial sums (i = j mod 8),
 * added pairwise, then the tail: a fixed order that vectorizes (the 8 partial sums are one vector of 8
 * lanes, simd/layernorm_avx2.h on x86) where a single running sum could not be reordered. */
static float sum8(const float *restrict x, float shift, size_t n, int squares)
{
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    size_t i = 0;
#if defined(__AVX2__)
    i = tl_layernorm_avx2_sum8(x, shift, n, squares, acc);
#else
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) {
            const float d = x[i + j] - shift;
            acc[j] += squares ? d * d : d;
        }
#endif
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) {
        const float d = x[i] - shift;
        s += squares ? d * d : d;
    }
    return s;
}

/* 1 / sqrt(v) for v = var + eps (or mean square + eps), with IEEE's answers at the edges: what
 * tinylm_layernorm_f32 computes in line (written out there, so that the C runtime's forward compiles to
 * the same code it did before the backward passes joined this file) */
static float inv_sqrt(float v)
{
    if (v > 0.0f && v <= 3.4028234663852886e38f)
        return 1.0f / (float)tl_sqrt_newton((double)v);
    return v == 0.0f ? 1.0f / 0.0f : (v > 0.0f ? 0.0f : v - v);  /* 1/sqrt(0), 1/sqrt(inf), NaN */
}

/* mean and rstd of one row of C values, in the contract's order: tinylm_layernorm_f32's */
static void row_stats(const float *restrict xr, size_t C, float eps, float *mean, float *rstd)
{
    *mean = sum8(xr, 0.0f, C, 0) / (float)C;
    *rstd = inv_sqrt(sum8(xr, *mean, C, 1) / (float)C + eps);
}

void tinylm_layernorm_f32(const float *restrict x, const float *restrict w, const float *restrict b,
                          float *restrict y, size_t rows, size_t C, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        const float mean = sum8(xr, 0.0f, C, 0) / (float)C;
        const float v = sum8(xr, mean, C, 1) / (float)C + eps;        /* var + eps */
        float rstd;
        if (v > 0.0f && v <= 3.4028234663852886e38f)
            rstd = 1.0f / (float)tl_sqrt_newton((double)v);
        else
            rstd = v == 0.0f ? 1.0f / 0.0f : (v > 0.0f ? 0.0f : v - v);  /* 1/sqrt(0), 1/sqrt(inf), NaN */
        for (size_t i = 0; i < C; i++) {
            const float h = (xr[i] - mean) * rstd;            /* xhat */
            yr[i] = b ? h * w[i] + b[i] : h * w[i];
        }
    }
}

/* a = sum of dy*w and bsum = sum of dy*w*xhat over one row, each in 8 interleaved partial sums
 * (xhat = (x - mean) * rstd; mean = 0 for RMSNorm) */
static void row_grad_sums(const float *restrict xr, const float *restrict w, const float *restrict dyr,
                          size_t C, float mean, float rstd, float *a, float *bsum)
{
    float acc_a[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    float acc_b[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    size_t i = 0;
#if defined(__AVX2__)
    i = tl_layernorm_avx2_grad_sums8(xr, w, dyr, C, mean, rstd, acc_a, acc_b);
#else
    for (; i + 8 <= C; i += 8)
        for (size_t j = 0; j < 8; j++) {
            const float dh = dyr[i + j] * w[i + j];            /* dxhat */
            acc_a[j] += dh;
            acc_b[j] += dh * ((xr[i + j] - mean) * rstd);
        }
#endif
    float sa = ((acc_a[0] + acc_a[1]) + (acc_a[2] + acc_a[3])) + ((acc_a[4] + acc_a[5]) + (acc_a[6] + acc_a[7]));
    float sb = ((acc_b[0] + acc_b[1]) + (acc_b[2] + acc_b[3])) + ((acc_b[4] + acc_b[5]) + (acc_b[6] + acc_b[7]));
    for (; i < C; i++) {
        const float dh = dyr[i] * w[i];
        sa += dh;
        sb += dh * ((xr[i] - mean) * rstd);
    }
    *a = sa;
    *bsum = sb;
}

/* dx = ((dxhat - a) - xhat b) rstd, because xhat depends on x directly (through rstd), through the mean
 * (-rstd/C for every input) and through the variance (d rstd/dx_j = -rstd xhat_j / C); the derivation is
 * in tinylm.autograd.layer_norm's docstring. dw and db are sums over the rows, kept in the outputs. */
void tinylm_layernorm_backward_f32(const float *restrict x, const float *restrict w, const float *restrict dy,
                                   float *restrict dx, float *restrict dw, float *restrict db,
                                   size_t rows, size_t C, float eps)
{
    for (size_t i = 0; i < C; i++) {
        dw[i] = 0.0f;
        if (db)
            db[i] = 0.0f;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        float *dxr = dx + r * C;
        float mean, rstd, a, b;
        row_stats(xr, C, eps, &mean, &rstd);
        row_grad_sums(xr, w, dyr, C, mean, rstd, &a, &b);
        a = a / (float)C;
        b = b / (float)C;
        for (size_t i = 0; i < C; i++) {
            const float h = (xr[i] - mean) * rstd;            /* xhat */
            dxr[i] = ((dyr[i] * w[i] - a) - h * b) * rstd;
            dw[i] += dyr[i] * h;
        }
        if (db)
            for (size_t i = 0; i < C; i++)
                db[i] += dyr[i];
    }
}

void tinylm_rmsnorm_f32(const float *restrict x, const float *restrict w, float *restrict y,
                        size_t rows, size_t C, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        const float rstd = inv_sqrt(sum8(xr, 0.0f, C, 1) / (float)C + eps);
        for (size_t i = 0; i < C; i++)
            yr[i] = (xr[i] * rstd) * w[i];
    }
}

/* LayerNorm's backward without its "- a" term, which came from subtracting the mean */
void tinylm_rmsnorm_backward_f32(const float *restrict x, const float *restrict w, const float *restrict dy,
                                 float *restrict dx, float *restrict dw, size_t rows, size_t C, float eps)
{
    for (size_t i = 0; i < C; i++)
        dw[i] = 0.0f;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        float *dxr = dx + r * C;
        const float rstd = inv_sqrt(sum8(xr, 0.0f, C, 1) / (float)C + eps);
        float a, b;
        row_grad_sums(xr, w, dyr, C, 0.0f, rstd, &a, &b);
        b = b / (float)C;
        for (size_t i = 0; i < C; i++) {
            const float h = xr[i] * rstd;                     /* xhat */
            dxr[i] = (dyr[i] * w[i] - h * b) * rstd;
            dw[i] += dyr[i] * h;
        }
    }
}
