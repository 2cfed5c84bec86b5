/* simd/matmul_f32_avx2.h -- tinylm_matmul_f32 with AVX2 + FMA: tl_matmul_f32_avx2, the template
 * simd/matmul_avx2.h on fp32 rows (used in place, no conversion). */
#include <immintrin.h>

#define TL_T float
#define TL_LOAD8(p) _mm256_loadu_ps(p)
#define TL_SCALAR(v) (v)
#define TL_AS_F32(row, buf, n) ((void)(buf), (row))   /* fp32 rows are used in place */
#define TL_NAME tl_matmul_f32_avx2
#include "simd/matmul_avx2.h"
