/* half.h -- scalar fp16 <-> fp32 conversions and float bit helpers, shared by the kernels.
 *
 * Portable integer code (no FPU needed, no libm). The contract is in tinylm_kernels.h. On Arm cores
 * whose FPU converts halves (Cortex-M4F/M7/M33/M55: VCVTB; every AArch64 core: FCVT), the two scalar
 * conversions are that one instruction instead (simd/half_armfp16.h, chosen by TL_F16_HW below); the
 * golden tests check that it gives the same bits. The array conversions with F16C are in
 * simd/half_f16c.h, with AArch64 NEON in simd/half_neon.h.
 *
 * binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
 * binary32: 1 sign bit, 8 exponent bits (bias 127), 23 mantissa bits.
 */
#ifndef TINYLM_HALF_H
#define TINYLM_HALF_H

#include <stdint.h>

/* Reinterpret bits through a union (well defined in C99 TC3; compiles to a register move). */
static inline uint32_t tl_f32_bits(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    return v.u;
}

static inline float tl_bits_f32(uint32_t u)
{
    union { float f; uint32_t u; } v;
    v.u = u;
    return v.f;
}

/* Round-half-to-even of a float with |v| < 2^22, without lrintf: adding 1.5 * 2^23 pushes the
 * fraction bits out of the mantissa, and the FPU's default rounding (nearest, ties to even) does the
 * rest. Subtracting the constant again gives the rounded value as a float. */
static inline float tl_round_even(float v)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23; without -ffast-math (v + c) - c is not folded */
    float t = v + magic;
    return t - magic;
}

/* Shift `value` right by `s` bits (1 <= s <= 31), rounding to nearest, ties to even. */
static inline uint32_t tl_shift_round_even(uint32_t value, uint32_t s)
{
    uint32_t q = value >> s;
    uint32_t rem = value & ((1u << s) - 1u);
    uint32_t half = 1u << (s - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q += 1u;
    return q;
}

/* An Arm FPU (single precision or more) with IEEE __fp16 converts halves in hardware. (Build with
 * -DTINYLM_NO_F16_HW for the integer code below instead.) */
#if defined(__ARM_FP16_FORMAT_IEEE) && defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TINYLM_NO_F16_HW)
#define TL_F16_HW 1
#include "simd/half_armfp16.h"
#else
#define TL_F16_HW 0
#endif

static inline uint16_t tl_f32_to_f16(float f)
{
#if TL_F16_HW
    return tl_half_armfp16_f32_to_f16(f);
#else
    uint32_t u = tl_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;                  /* |f| as bits */

    if (a >= 0x7f800000u) {                        /* inf or NaN */
        if (a > 0x7f800000u)
            return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
        return (uint16_t)(sign | 0x7c00u);
    }
    if (a >= 0x477ff000u)                          /* >= 65520: rounds past 65504 to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) {                        /* >= 2^-14: a normal half */
        /* rebias the exponent (127 -> 15), then drop 13 mantissa bits with rounding; a carry out
         * of the mantissa correctly bumps the exponent */
        return (uint16_t)(sign | tl_shift_round_even(a - 0x38000000u, 13));
    }
    {                                              /* a subnormal half (or zero) */
        uint32_t exponent = a >> 23;               /* value = mant * 2^(exponent - 150) */
        uint32_t mant = (a & 0x7fffffu) | 0x800000u;
        uint32_t s = 126u - exponent;              /* result = round(value / 2^-24) = mant >> s */
        if (s >= 25u)                              /* value < 2^-25: rounds to zero */
            return (uint16_t)sign;
        return (uint16_t)(sign | tl_shift_round_even(mant, s)); /* may round up to 0x0400 */
    }
#endif
}

static inline float tl_f16_to_f32(uint16_t h)
{
#if TL_F16_HW
    return tl_half_armfp16_f16_to_f32(h);
#else
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exponent = ((uint32_t)h >> 10) & 0x1fu;
    uint32_t mant = (uint32_t)h & 0x3ffu;

    if (exponent == 0x1fu) {                       /* inf, or NaN (quieted) */
        uint32_t quiet = mant ? 0x400000u : 0u;
        return tl_bits_f32(sign | 0x7f800000u | quiet | (mant << 13));
    }
    if (exponent == 0u) {
        if (mant == 0u)
            return tl_bits_f32(sign);              /* +-0 */
        exponent = 113u;                           /* subnormal: mant * 2^-24, normalise it */
        while (!(mant & 0x400u)) {
            mant <<= 1;
            exponent -= 1u;
        }
        return tl_bits_f32(sign | (exponent << 23) | ((mant & 0x3ffu) << 13));
    }
    return tl_bits_f32(sign | ((exponent + 112u) << 23) | (mant << 13));
#endif
}

#endif /* TINYLM_HALF_H */
