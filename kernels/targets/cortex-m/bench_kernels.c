/* bench_kernels.c -- calls each kernel once between two marker functions, so the QEMU plugin in
 * qemu-plugin/count_insns.c can count the instructions of exactly that call (benchmarks/mcu/count.py
 * builds and runs this). Prints one "span NAME" line per measurement, in the plugin's order.
 *
 * Shapes are the ones CMSIS-NN's figures are quoted for: an int8 fully connected layer with one
 * input vector (matrix-vector product, M = 1) of 64x64 and 256x256, and a 64-element softmax.
 * The inputs are pseudo-random but fixed (an LCG), so the counts are the same on every run.
 */
#include <stdio.h>

#include "tinylm_kernels.h"

/* The markers: empty, never inlined, never merged with each other (noipa also stops identical-code
 * folding), so each has its own address for the plugin to watch. */
__attribute__((noipa)) void tl_mark_begin(void) { __asm volatile("" ::: "memory"); }
__attribute__((noipa)) void tl_mark_end(void) { __asm volatile("nop" ::: "memory"); }

#define BIG 256

static int8_t w_q[BIG * BIG], x_q[BIG], x_q_work[BIG];
static float w_scale[BIG * (BIG / 32)], x_f[BIG], b_f[BIG], y_f[BIG], x_scale[BIG / 32];
static float w_f[64 * 64];
static uint16_t w_h[64 * 64], x_h[64], sm_h[64], sm_h_out[64];
static int32_t y_i[BIG];
static float sm_x[64], sm_y[64];
static int8_t sm_x8[64];
static uint8_t sm_y8[64];
static uint32_t sm_table[256];

static uint32_t lcg_state = 12345u;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;                                   /* 24 random bits */
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)lcg() / 16777216.0f; }
static int8_t int8(void) { return (int8_t)((int32_t)(lcg() % 255u) - 127); }   /* -127..127 */

static void fill(void)
{
    size_t i;
    for (i = 0; i < BIG * BIG; i++)
        w_q[i] = int8();
    for (i = 0; i < BIG * (BIG / 32); i++)
        w_scale[i] = uniform(0.001f, 0.02f);
    for (i = 0; i < BIG; i++) {
        x_q[i] = int8();
        x_f[i] = uniform(-2.0f, 2.0f);
        b_f[i] = uniform(-0.1f, 0.1f);
    }
    for (i = 0; i < 64 * 64; i++)
        w_f[i] = uniform(-1.0f, 1.0f);
    tinylm_f32_to_f16(w_f, w_h, 64 * 64);
    tinylm_f32_to_f16(x_f, x_h, 64);
    for (i = 0; i < 64; i++) {
        sm_x[i] = uniform(-4.0f, 4.0f);
        sm_x8[i] = int8();
    }
    tinylm_f32_to_f16(sm_x, sm_h, 64);
    for (i = 0; i < 256; i++)            /* a decreasing Q2.30 table; its values do not matter here */
        sm_table[i] = (uint32_t)(1073741824.0f / (1.0f + 0.05f * (float)i));
}

#define SPAN(name, call) do { tl_mark_begin(); call; tl_mark_end(); printf("span %s\n", name); } while (0)

int main(void)
{
    fill();
    SPAN("empty", (void)0);
    SPAN("matmul_s8 64x64", tinylm_matmul_s8(x_q, w_q, y_i, 1, 64, 64));
    SPAN("matmul_s8 256x256", tinylm_matmul_s8(x_q, w_q, y_i, 1, 256, 256));
    SPAN("linear_s8 64x64 g64", tinylm_linear_s8(x_f, w_q, w_scale, b_f, y_f, x_q_work, x_scale,
                                                 1, 64, 64, 64));
    SPAN("linear_s8 64x64 g32", tinylm_linear_s8(x_f, w_q, w_scale, b_f, y_f, x_q_work, x_scale,
                                                 1, 64, 64, 32));
    SPAN("linear_s8 256x256 g256", tinylm_linear_s8(x_f, w_q, w_scale, b_f, y_f, x_q_work, x_scale,
                                                    1, 256, 256, 256));
    SPAN("linear_s8 256x256 g32", tinylm_linear_s8(x_f, w_q, w_scale, b_f, y_f, x_q_work, x_scale,
                                                   1, 256, 256, 32));
    SPAN("matmul_f32 64x64", tinylm_matmul_f32(x_f, w_f, b_f, y_f, 1, 64, 64));
    SPAN("matmul_f16 64x64", tinylm_matmul_f16(x_h, w_h, b_f, y_f, 1, 64, 64));
    SPAN("softmax_f32 64", tinylm_softmax_f32(sm_x, sm_y, 1, 64, 0));
    SPAN("softmax_f16 64", tinylm_softmax_f16(sm_h, sm_h_out, 1, 64));
    SPAN("softmax_s8 64", tinylm_softmax_s8(sm_x8, sm_y8, 1, 64, sm_table));
    printf("checksum %ld\n", (long)y_i[0] + (long)sm_y8[0] + (long)(y_f[0] * 1000.0f + sm_y[0]));
    return 0;
}
