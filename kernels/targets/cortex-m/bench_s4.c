/* bench_s4.c -- the int4 Linear layer beside the int8 one, each called once between the marker
 * functions of the QEMU counting plugin (benchmarks/mcu/count.py --int4 builds and runs this; a
 * program of its own, so adding it left bench_kernels.c's committed counts as they were).
 *
 * Shapes are those of CMSIS-NN's quoted figures: one input vector (M = 1), 64x64 and 256x256, with
 * one group per row (g64, g256: one scale per output, what CMSIS-NN's fully connected layers do) and
 * with groups of 32 (what tinylm's int4:g32 models use). Pseudo-random but fixed inputs (an LCG).
 */
#include <stdio.h>

#include "tinylm_kernels.h"

__attribute__((noipa)) void tl_mark_begin(void) { __asm volatile("" ::: "memory"); }
__attribute__((noipa)) void tl_mark_end(void) { __asm volatile("nop" ::: "memory"); }

#define BIG 256

static int8_t w_q[BIG * BIG], x_q[BIG];
static uint8_t w_q4[BIG * BIG / 2];                         /* two int4 a byte, nibbles in -7..7 */
static float w_scale[BIG * (BIG / 32)], x_f[BIG], b_f[BIG], y_f[BIG], x_scale[BIG / 32];

static uint32_t lcg_state = 12345u;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;                                   /* 24 random bits */
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)lcg() / 16777216.0f; }
static int8_t int8(void) { return (int8_t)((int32_t)(lcg() % 255u) - 127); }           /* -127..127 */
static uint8_t nibble(void) { return (uint8_t)(((int32_t)(lcg() % 15u) - 7) & 0xF); }   /* -7..7 */

static void fill(void)
{
    size_t i;
    for (i = 0; i < BIG * BIG; i++)
        w_q[i] = int8();
    for (i = 0; i < BIG * BIG / 2; i++)
        w_q4[i] = (uint8_t)(nibble() | nibble() << 4);
    for (i = 0; i < BIG * (BIG / 32); i++)
        w_scale[i] = uniform(0.001f, 0.02f);
    for (i = 0; i < BIG; i++) {
        x_f[i] = uniform(-2.0f, 2.0f);
        b_f[i] = uniform(-0.1f, 0.1f);
    }
}

#define SPAN(name, call) do { tl_mark_begin(); call; tl_mark_end(); printf("span %s\n", name); } while (0)
#define S8(n, gs) tinylm_linear_s8(x_f, w_q, w_scale, b_f, y_f, x_q, x_scale, 1, n, n, gs)
#define S4(n, gs) tinylm_linear_s4(x_f, w_q4, w_scale, b_f, y_f, x_q, x_scale, 1, n, n, gs)

int main(void)
{
    fill();
    SPAN("empty", (void)0);
    SPAN("linear_s8 64x64 g64", S8(64, 64));
    SPAN("linear_s4 64x64 g64", S4(64, 64));
    SPAN("linear_s8 64x64 g32", S8(64, 32));
    SPAN("linear_s4 64x64 g32", S4(64, 32));
    SPAN("linear_s8 256x256 g256", S8(256, 256));
    SPAN("linear_s4 256x256 g256", S4(256, 256));
    SPAN("linear_s8 256x256 g32", S8(256, 32));
    SPAN("linear_s4 256x256 g32", S4(256, 32));
    printf("checksum %ld\n", (long)(y_f[0] * 1000.0f));
    return 0;
}
