/* simd/dot_s8_neon.h -- tl_dot_s8_1x8 with AArch64 NEON (dot_s8.h includes it when __aarch64__ and
 * __ARM_NEON are defined: every 64-bit Arm core, from the Raspberry Pi 3's Cortex-A53 up).
 *
 * A vector register holds 16 int8. Two ways to multiply and add them into 4 int32 lanes:
 *   - with the dot-product extension (__ARM_FEATURE_DOTPROD: Armv8.2-A+dotprod and later, e.g.
 *     Cortex-A55/A76 (Raspberry Pi 5), Apple M1; build with -march=armv8.2-a+dotprod or newer, or
 *     -march=native on such a core), SDOT multiplies 4 signed bytes by 4 signed bytes and adds
 *     the 4 products to each int32 lane, in one instruction;
 *   - on plain Armv8-A NEON, SMULL / SMLAL2 multiply the low and the high 8 bytes into int16 lanes
 *     (each lane the sum of two products: at most 2 * 127 * 127 = 32258, no overflow, since -128
 *     never occurs), and SADALP adds neighbouring int16 lanes into the int32 lanes.
 * Either way the int32 sums are exact, so the same as the portable loop's.
 */
#include <arm_neon.h>

/* acc + the products of a and b, 4 adjacent products summed into each int32 lane */
static inline int32x4_t tl_dot_s8_neon_madd(int32x4_t acc, int8x16_t a, int8x16_t b)
{
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));   /* a[i] * b[i], i = 0..7 */
    p = vmlal_high_s8(p, a, b);                                /* + a[i + 8] * b[i + 8] */
    return vpadalq_s16(acc, p);
#endif
}

/* tl_dot_s8_1x8: 16 columns per step, one load of a serving the 8 rows of b; the 8 accumulators are
 * added up pairwise into out[0..7]; the last n % 16 columns by tl_dot_s8 */
static inline void tl_dot_s8_neon_1x8(const int8_t *a, const int8_t *b, size_t ldb, size_t n,
                                      int32_t out[8])
{
    int32x4_t acc[8];
    size_t j, k;
    for (j = 0; j < 8; j++)
        acc[j] = vdupq_n_s32(0);
    for (k = 0; k + 16 <= n; k += 16) {
        int8x16_t va = vld1q_s8(a + k);
        for (j = 0; j < 8; j++)
            acc[j] = tl_dot_s8_neon_madd(acc[j], va, vld1q_s8(b + j * ldb + k));
    }
    /* lane j of the result = the sum of acc[j]'s 4 lanes */
    vst1q_s32(out, vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3])));
    vst1q_s32(out + 4, vpaddq_s32(vpaddq_s32(acc[4], acc[5]), vpaddq_s32(acc[6], acc[7])));
    if (k < n)
        for (j = 0; j < 8; j++)
            out[j] += tl_dot_s8(a + k, b + j * ldb + k, n - k);
}
