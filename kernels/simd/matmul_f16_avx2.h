/* simd/matmul_f16_avx2.h -- tinylm_matmul_f16 with AVX2 + FMA + F16C: tl_matmul_f16_avx2, the
 * template simd/matmul_avx2.h on binary16 rows, converted to fp32 by VCVTPH2PS as they are loaded
 * (rows of x once per tile, into a buffer, with tinylm_f16_to_f32). */
#include <immintrin.h>

#define TL_T uint16_t
#define TL_LOAD8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define TL_SCALAR(v) tl_f16_to_f32(v)
#define TL_AS_F32(row, buf, n) (tinylm_f16_to_f32((row), (buf), (n)), (const float *)(buf))
#define TL_NAME tl_matmul_f16_avx2
#include "simd/matmul_avx2.h"
