/* simd/half_neon.h -- the array conversions fp32 <-> fp16 with AArch64 NEON (half.c includes it when
 * __aarch64__ and __ARM_NEON are defined and half.h converts in hardware, TL_F16_HW): FCVTN / FCVTL
 * convert 4 values per instruction, 8 per step here. Under Linux (and macOS) the FPCR is as the
 * contract needs it (round to nearest even, no flush-to-zero, no default NaN, IEEE half format), so
 * the bits are those of the scalar conversions: ties to even, subnormal halves, overflow to inf,
 * NaNs quieted with their top payload bits. The last n % 8 values by half.h's scalar conversions.
 */
#include <arm_neon.h>

static void tl_f32_to_f16_neon(const float *restrict x, uint16_t *restrict h, size_t n)
{
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        float16x4_t lo = vcvt_f16_f32(vld1q_f32(x + i));
        float16x8_t v = vcvt_high_f16_f32(lo, vld1q_f32(x + i + 4));
        vst1q_u16(h + i, vreinterpretq_u16_f16(v));
    }
    for (; i < n; i++)
        h[i] = tl_f32_to_f16(x[i]);
}

static void tl_f16_to_f32_neon(const uint16_t *restrict h, float *restrict x, size_t n)
{
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        float16x8_t v = vreinterpretq_f16_u16(vld1q_u16(h + i));
        vst1q_f32(x + i, vcvt_f32_f16(vget_low_f16(v)));
        vst1q_f32(x + i + 4, vcvt_high_f32_f16(v));
    }
    for (; i < n; i++)
        x[i] = tl_f16_to_f32(h[i]);
}
