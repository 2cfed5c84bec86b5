/* build_info.c -- which SIMD paths this build compiled in (a string literal: no mutable state). */
#include "tinylm_kernels.h"

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
#if defined(__ARM_FEATURE_DSP)
#define TL_INFO_DSP "arm-dsp "
#else
#define TL_INFO_DSP ""
#endif

const char *tinylm_build_info(void)
{
    /* "portable" always: the portable C is compiled in every build (tails, remainders, fallbacks) */
    return TL_INFO_AVX512F TL_INFO_AVX512BW TL_INFO_AVX512VNNI TL_INFO_AVX2 TL_INFO_FMA TL_INFO_F16C
        TL_INFO_DSP "portable";
}
