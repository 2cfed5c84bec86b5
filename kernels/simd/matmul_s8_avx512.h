/* simd/matmul_s8_avx512.h -- tinylm_matmul_s8 with AVX-512 VNNI (F + BW + VNNI: TL_S8_AVX512).
 * Uses simd/dot_s8_avx512.h and simd/gemm_s8_avx512.h (included before it).
 *
 * 6 rows of x or more pay for packing w: the panels of tl_gemm_s8_avx512 -- when K >= 4, since the
 * panels read x 4 bytes at a time and with shorter rows those reads would pass the end of x. Fewer
 * rows (or K < 4) take one row of x against 16 rows of w as stored, lanes past N masked off. */
static void tl_matmul_s8_avx512(const int8_t *restrict x, const int8_t *restrict w, int32_t *restrict y,
                                size_t M, size_t N, size_t K)
{
    size_t m, n0;
    if (M >= TL_S8_MR && K >= 4) {
        tl_gemm_s8_avx512(x, w, y, M, N, K);
        return;
    }
    for (n0 = 0; n0 < N; n0 += 16) {
        __mmask16 live = tl_dot_s8_avx512_lanes16(N - n0);
        for (m = 0; m < M; m++) {
            __m512i lo, hi;
            tl_dot_s8_avx512_1x16(x + m * K, w + n0 * K, K, N - n0, K, &lo, &hi);
            _mm512_mask_storeu_epi32(y + m * N + n0, live, _mm512_add_epi32(lo, hi));
        }
    }
}
