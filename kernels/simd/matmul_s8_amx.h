/* simd/matmul_s8_amx.h -- tinylm_matmul_s8_amx with AMX-INT8 tiles (TL_S8_AMX): 16 rows of x or
 * more go through the tiles of simd/gemm_s8_amx.h (included before it); fewer rows, or K = 0, take
 * the VNNI variant (a tile step costs as much for 1 row of x as for 16). Exact, like every variant. */
static void tl_matmul_s8_amx(const int8_t *restrict x, const int8_t *restrict w, int32_t *restrict y,
                             size_t M, size_t N, size_t K)
{
    if (M >= 16 && K > 0)
        tl_gemm_s8_amx(x, w, y, M, N, K);
    else
        tl_matmul_s8_avx512(x, w, y, M, N, K);
}
