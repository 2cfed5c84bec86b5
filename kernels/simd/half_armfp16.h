/* simd/half_armfp16.h -- the scalar fp16 <-> fp32 conversions on an Arm FPU with IEEE __fp16
 * (half.h includes it when TL_F16_HW is 1): GCC converts with VCVTB.F16.F32 and VCVTB.F32.F16
 * (on AArch64: FCVT, with the FPCR that Linux and macOS leave in the same state as below).
 * With the FPSCR as the reset and our startup leave it (round to nearest even, no flush-to-zero, no
 * default-NaN, IEEE rather than the alternative half format) the hardware does exactly what the
 * contract says: ties to even, subnormal halves, overflow to inf, NaNs quieted with their top
 * payload bits.
 */

static inline uint16_t tl_half_armfp16_f32_to_f16(float f)
{
    union { __fp16 h; uint16_t u; } v;
    v.h = (__fp16)f;
    return v.u;
}

static inline float tl_half_armfp16_f16_to_f32(uint16_t h)
{
    union { __fp16 h; uint16_t u; } v;
    v.u = h;
    return (float)v.h;
}
