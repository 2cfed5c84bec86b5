/* simd/matmul_f32_neon.h -- tinylm_matmul_f32 with AArch64 NEON: tl_matmul_f32_neon, the template
 * simd/matmul_neon.h on fp32 rows. */
#define TL_T float
#define TL_LOAD4(p) vld1q_f32(p)
#define TL_SCALAR(v) (v)
#define TL_NAME tl_matmul_f32_neon
#include "simd/matmul_neon.h"
