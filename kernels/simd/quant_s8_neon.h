/* simd/quant_s8_neon.h -- tinylm_quantize_s8 with AArch64 NEON: max |x| and "any NaN?" 4 lanes at a
 * time, then the division (FDIV, correctly rounded like the scalar one), the rounding (FRINTN:
 * nearest, ties to even, as tl_round_even) and the clamping 4 lanes at a time; the last n % 4
 * values of each pass go through quant_s8.c's portable steps. The same operations, so the same bits.
 */
#include <arm_neon.h>

static void tl_quant_s8_neon_group(const float *restrict xg, int8_t *restrict qg, float *restrict scale,
                                   size_t n)
{
    const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    float32x4_t vmax = vdupq_n_f32(0.0f), vs;
    uint32x4_t vnan = vdupq_n_u32(0);
    float amax, s;
    int has_nan;
    size_t k;
    for (k = 0; k + 4 <= n; k += 4) {
        float32x4_t a = vabsq_f32(vld1q_f32(xg + k));
        vnan = vorrq_u32(vnan, vmvnq_u32(vceqq_f32(a, a)));  /* a != a: NaN */
        vmax = vmaxq_f32(vmax, a);        /* NaN lanes make vmax NaN; only read when there is none */
    }
    has_nan = vmaxvq_u32(vnan) != 0;
    amax = tl_quant_s8_amax(xg + k, n - k, vmaxvq_f32(vmax), &has_nan);
    s = tl_quant_s8_scale(amax, has_nan);
    *scale = s;
    if (!tl_quant_s8_usable(s)) {                 /* 0, NaN or inf: the whole group is q = 0 */
        for (k = 0; k < n; k++)
            qg[k] = 0;
        return;
    }
    vs = vdupq_n_f32(s);
    for (k = 0; k + 8 <= n; k += 8) {
        float32x4_t v0 = vdivq_f32(vld1q_f32(xg + k), vs), v1 = vdivq_f32(vld1q_f32(xg + k + 4), vs);
        int32x4_t i0, i1;
        v0 = vminq_f32(vmaxq_f32(vrndnq_f32(v0), lo), hi);
        v1 = vminq_f32(vmaxq_f32(vrndnq_f32(v1), lo), hi);
        i0 = vcvtq_s32_f32(v0);                                        /* exact: an integer */
        i1 = vcvtq_s32_f32(v1);
        vst1_s8(qg + k, vmovn_s16(vcombine_s16(vmovn_s32(i0), vmovn_s32(i1))));  /* in [-127, 127] */
    }
    for (; k < n; k++)
        qg[k] = tl_quant_s8_one(xg[k], s);
}

static void tl_quantize_s8_neon(const float *restrict x, int8_t *restrict q, float *restrict scale,
                                size_t M, size_t K, size_t group_size)
{
    size_t G = K / group_size, m, g;
    for (m = 0; m < M; m++)
        for (g = 0; g < G; g++)
            tl_quant_s8_neon_group(x + m * K + g * group_size, q + m * K + g * group_size,
                                   scale + m * G + g, group_size);
}
