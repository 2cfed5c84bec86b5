/* matmul_f16.c -- y (M, N) fp32 = x (M, K) fp16 @ w (N, K).T fp16 (+ b fp32), fp32 math.
 * Contract: tinylm_kernels.h. */
#include "tinylm_kernels.h"
#include "half.h"

/* AVX-512 (with BW and VL for the masked 16-bit loads) and the AVX2 + FMA + F16C it implies */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX2__) && \
    defined(__FMA__) && defined(__F16C__)
#define TL_F16_AVX512 1
#else
#define TL_F16_AVX512 0
#endif

#if TL_F16_AVX512
#include "simd/matmul_f16_avx512.h"
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "simd/matmul_f16_avx2.h"
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include "simd/matmul_f16_neon.h"
#endif

void tinylm_matmul_f16(const uint16_t *restrict x, const uint16_t *restrict w,
                       const float *restrict b, float *restrict y, size_t M, size_t N, size_t K)
{
#if TL_F16_AVX512
    tl_matmul_f16_avx512(x, w, b, y, M, N, K);
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    tl_matmul_f16_avx2(x, w, b, y, M, N, K);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    tl_matmul_f16_neon(x, w, b, y, M, N, K);
#else
    size_t m, n, k;
    for (m = 0; m < M; m++) {
        const uint16_t *xm = x + m * K;              /* row m of x: (K,) */
        for (n = 0; n < N; n++) {
            const uint16_t *wn = w + n * K;          /* row n of w: (K,) */
            float acc = 0.0f;
            for (k = 0; k < K; k++)
                acc += tl_f16_to_f32(xm[k]) * tl_f16_to_f32(wn[k]);
            y[m * N + n] = b ? acc + b[n] : acc;
        }
    }
#endif
}
