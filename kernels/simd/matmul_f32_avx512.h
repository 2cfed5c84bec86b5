/* simd/matmul_f32_avx512.h -- tinylm_matmul_f32 with AVX-512 F: tl_matmul_f32_avx512, the template
 * simd/matmul_avx512.h on fp32 rows (packed as they are), and for fewer than 6 rows of x the AVX2
 * dot products of simd/matmul_f32_avx2.h (a CPU with AVX-512 has AVX2 and FMA). */
#include "simd/matmul_f32_avx2.h"
#undef TL_T            /* the AVX2 template's parameters */
#undef TL_LOAD8
#undef TL_SCALAR
#undef TL_AS_F32
#undef TL_NAME

#define TL_T float
#define TL_LOAD16(p, n) _mm512_maskz_loadu_ps((__mmask16)((n) >= 16 ? 0xffffu : (1u << (n)) - 1), (p))
#define TL_SMALL tl_matmul_f32_avx2
#define TL_NAME tl_matmul_f32_avx512
#include "simd/matmul_avx512.h"
#undef TL_T
#undef TL_LOAD16
#undef TL_SMALL
#undef TL_NAME
