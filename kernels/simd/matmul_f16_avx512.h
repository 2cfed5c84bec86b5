/* simd/matmul_f16_avx512.h -- tinylm_matmul_f16 with AVX-512 F + BW + VL and F16C:
 * tl_matmul_f16_avx512, the template simd/matmul_avx512.h on binary16 rows, converted to fp32 by
 * VCVTPH2PS while they are packed (each element of w once per block of rows of x, each element of x
 * once per block of w), so the micro-kernel is the fp32 one. Fewer than 6 rows of x take the AVX2
 * dot products of simd/matmul_f16_avx2.h. */
#include "simd/matmul_f16_avx2.h"
#undef TL_T            /* the AVX2 template's parameters */
#undef TL_LOAD8
#undef TL_SCALAR
#undef TL_AS_F32
#undef TL_NAME

#define TL_T uint16_t
#define TL_LOAD16(p, n) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(                                  \
    (__mmask16)((n) >= 16 ? 0xffffu : (1u << (n)) - 1), (const void *)(p)))
#define TL_SMALL tl_matmul_f16_avx2
#define TL_NAME tl_matmul_f16_avx512
#include "simd/matmul_avx512.h"
#undef TL_T
#undef TL_LOAD16
#undef TL_SMALL
#undef TL_NAME
