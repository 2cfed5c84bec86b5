/* bench_cmsis_nn_s4.c -- CMSIS-NN's arm_fully_connected_s4 called once per shape between the marker
 * functions of the QEMU counting plugin, the shapes of bench_s4.c (M = 1; 64x64, 256x256).
 * `python benchmarks/mcu/count.py --cmsis-nn DIR` builds it against a CMSIS-NN checkout DIR (not
 * part of tinylm: see count.py). Weights: CMSIS-NN's s4 packing, two values a byte, pseudo-random. */
#include <stdio.h>

#include "arm_nnfunctions.h"

__attribute__((noipa)) void tl_mark_begin(void) { __asm volatile("" ::: "memory"); }
__attribute__((noipa)) void tl_mark_end(void) { __asm volatile("nop" ::: "memory"); }

#define BIG 256

static int8_t input[BIG], output[BIG], kernel[BIG * BIG / 2];
static int32_t bias[BIG];

static uint32_t lcg_state = 12345u;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;
}

static void fully_connected(int32_t n)
{
    const cmsis_nn_context ctx = {NULL, 0};
    const cmsis_nn_fc_params fc = {128, 0, -3, {-128, 127}};      /* input zero point -128 */
    const cmsis_nn_per_tensor_quant_params quant = {1518500250, -7};
    const cmsis_nn_dims input_dims = {1, 1, 1, n}, filter_dims = {n, 1, 1, n};
    const cmsis_nn_dims bias_dims = {1, 1, 1, n}, output_dims = {1, 1, 1, n};
    (void)arm_fully_connected_s4(&ctx, &fc, &quant, &input_dims, input, &filter_dims, kernel, &bias_dims, bias,
                                 &output_dims, output);
}

#define SPAN(name, call) do { tl_mark_begin(); call; tl_mark_end(); printf("span %s\n", name); } while (0)

int main(void)
{
    size_t i;
    for (i = 0; i < BIG; i++) {
        input[i] = (int8_t)((int32_t)(lcg() % 255u) - 127);
        bias[i] = (int32_t)(lcg() % 2001u) - 1000;
    }
    for (i = 0; i < BIG * BIG / 2; i++)
        kernel[i] = (int8_t)((((lcg() % 15u) + 9u) & 0xFu) | (((lcg() % 15u) + 9u) & 0xFu) << 4);  /* -7..7 */
    SPAN("empty", (void)0);
    SPAN("64x64", fully_connected(64));
    SPAN("256x256", fully_connected(256));
    printf("checksum %d\n", (int)output[0]);
    return 0;
}
