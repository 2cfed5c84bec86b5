/* simd/matmul_f16_neon.h -- tinylm_matmul_f16 with AArch64 NEON: tl_matmul_f16_neon, the template
 * simd/matmul_neon.h on binary16 rows, converted exactly to fp32 by FCVTL as they are loaded
 * (4 halves per instruction; the K % 4 tail by half.h's scalar conversion). */
#define TL_T uint16_t
#define TL_LOAD4(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))
#define TL_SCALAR(v) tl_f16_to_f32(v)
#define TL_NAME tl_matmul_f16_neon
#include "simd/matmul_neon.h"
