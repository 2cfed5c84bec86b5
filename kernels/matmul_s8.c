/* matmul_s8.c -- y (M, N) int32 = x (M, K) int8 @ w (N, K).T, exact. Contract: tinylm_kernels.h.
 * tinylm_matmul_s8_amx: the same on AMX tiles where the build has them (the caller has the OS's
 * permission for them), else tinylm_matmul_s8. */
#include "tinylm_kernels.h"
#include "dot_s8.h"

#if TL_S8_AVX512
#include "simd/dot_s8_avx512.h"
#include "simd/gemm_s8_avx512.h"
#include "simd/matmul_s8_avx512.h"
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include "simd/matmul_s8_neon.h"
#endif
#if TL_S8_AMX
#include <immintrin.h>
#include "simd/gemm_s8_amx.h"
#include "simd/matmul_s8_amx.h"
#endif

void tinylm_matmul_s8(const int8_t *restrict x, const int8_t *restrict w, int32_t *restrict y,
                      size_t M, size_t N, size_t K)
{
#if TL_S8_AVX512
    tl_matmul_s8_avx512(x, w, y, M, N, K);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    tl_matmul_s8_neon(x, w, y, M, N, K);
#else
    /* blocks of 8 output columns: 8 rows of w (8 * K bytes) stay in cache while every row of x
     * passes by (tl_dot_s8_1x8 is the AVX2, Helium or DSP loop where the build has one) */
    size_t m, n0;
    for (n0 = 0; n0 + 8 <= N; n0 += 8)
        for (m = 0; m < M; m++)
            tl_dot_s8_1x8(x + m * K, w + n0 * K, K, K, y + m * N + n0);
    for (; n0 < N; n0++)                          /* the last N % 8 columns */
        for (m = 0; m < M; m++)
            y[m * N + n0] = tl_dot_s8(x + m * K, w + n0 * K, K);
#endif
}

void tinylm_matmul_s8_amx(const int8_t *restrict x, const int8_t *restrict w, int32_t *restrict y,
                          size_t M, size_t N, size_t K)
{
#if TL_S8_AMX
    tl_matmul_s8_amx(x, w, y, M, N, K);
#else
    tinylm_matmul_s8(x, w, y, M, N, K);
#endif
}
