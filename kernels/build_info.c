/* build_info.c -- which instruction-set paths this build compiled in (a string literal: no mutable
 * state). One word per feature that some kernel chooses a variant by (kernels/simd/):
 *   avx512f avx512bw avx512vnni  all three: int8 matmul and linear (simd/..._s8_avx512.h);
 *                                avx512f: fp32 matmul (simd/matmul_f32_avx512.h), exp, fp32 softmax,
 *                                quantize; F + BW + VL: fp16 matmul (simd/matmul_f16_avx512.h)
 *   amx-int8                     int8 matmul and linear on AMX tiles, M >= 16 (simd/..._amx.h), in
 *                                the _amx entry points, called once the OS allowed the tiles
 *   avx2                         int8 dots, linear_s8, quantize, exp, softmax
 *   fma                          fp32 and fp16 matmul (with AVX2)
 *   f16c                         fp16 conversions; fp16 matmul and softmax (with AVX2)
 *   arm-mve                      int8 dots with Helium's VMLADAVA (Cortex-M55/M85)
 *   arm-dsp                      int8 dots with SMLAD (Cortex-M4/M7/M33; the M55 takes MVE)
 *   arm-fp16                     scalar fp16 conversions by the FPU (VCVTB): half.h's TL_F16_HW
 *   neon                         AArch64: int8 dots, matmul_s8, linear_s8, quantize, fp32 and fp16
 *                                matmul, fp16 array conversions (simd/..._neon.h)
 *   arm-dotprod                  AArch64 with SDOT: the int8 dots of the neon paths
 * and "portable" always: the portable C is compiled in every build (tails, remainders, fallbacks).
 */
#include "tinylm_kernels.h"
#include "half.h"
#include "dot_s8.h"

#if defined(__AVX512F__)
#define TL_INFO_AVX512F "avx512f "
#else
#define TL_INFO_AVX512F ""
#endif
#if defined(__AVX512BW__)
#define TL_INFO_AVX512BW "avx512bw "
#else
#define TL_INFO_AVX512BW ""
#endif
#if defined(__AVX512VNNI__)
#define TL_INFO_AVX512VNNI "avx512vnni "
#else
#define TL_INFO_AVX512VNNI ""
#endif
#if TL_S8_AMX
#define TL_INFO_AMX "amx-int8 "
#else
#define TL_INFO_AMX ""
#endif
#if defined(__AVX2__)
#define TL_INFO_AVX2 "avx2 "
#else
#define TL_INFO_AVX2 ""
#endif
#if defined(__FMA__)
#define TL_INFO_FMA "fma "
#else
#define TL_INFO_FMA ""
#endif
#if defined(__F16C__)
#define TL_INFO_F16C "f16c "
#else
#define TL_INFO_F16C ""
#endif
#if defined(__ARM_FEATURE_MVE)
#define TL_INFO_MVE "arm-mve "
#else
#define TL_INFO_MVE ""
#endif
#if defined(__ARM_FEATURE_DSP)
#define TL_INFO_DSP "arm-dsp "
#else
#define TL_INFO_DSP ""
#endif
#if TL_F16_HW
#define TL_INFO_FP16 "arm-fp16 "
#else
#define TL_INFO_FP16 ""
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define TL_INFO_NEON "neon "
#else
#define TL_INFO_NEON ""
#endif
#if defined(__aarch64__) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
#define TL_INFO_DOTPROD "arm-dotprod "
#else
#define TL_INFO_DOTPROD ""
#endif

const char *tinylm_build_info(void)
{
    return TL_INFO_AVX512F TL_INFO_AVX512BW TL_INFO_AVX512VNNI TL_INFO_AMX TL_INFO_AVX2 TL_INFO_FMA TL_INFO_F16C
        TL_INFO_MVE TL_INFO_DSP TL_INFO_FP16 TL_INFO_NEON TL_INFO_DOTPROD "portable";
}
