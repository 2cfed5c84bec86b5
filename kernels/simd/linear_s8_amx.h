/* simd/linear_s8_amx.h -- tinylm_linear_s8_amx with AMX-INT8 tiles (TL_S8_AMX), after the
 * activations are quantized. Uses simd/gemm_s8_amx.h and simd/linear_s8_avx512.h (included before it).
 *
 * Which shapes take which loop (tl_linear_s8_amx, at the end):
 *   16 rows of x or more, one group per row: the int32 matmul on tiles (tl_gemm_s8_amx) into y's
 *     memory, then each dot becomes, in place, (0 + (x_scale * w_scale) * (float)dot) + b.
 *   16 rows or more, groups of 4 .. 64 columns (a multiple of 4) or of a multiple of 64 up to
 *     TL_AMX_KC: each group's exact int32 dots for a 32 x 32 block of y in four C tiles (one tile
 *     step of group_size bytes, or group_size / 64 steps of 64), stored to a buffer; each output then
 *     adds (x_scale * w_scale) * (float)dot to its running sum, in group order, as the portable loop does.
 *   anything else: the AVX-512 VNNI variant (tl_linear_s8_avx512).
 * The same float operations per output, in the same order, as the portable loop: the same bits.
 */

/* The float steps of gc groups for rows m .. m + 31 (those below M) and the 32 columns n0 ..: each
 * output adds (x_scale * w_scale) * (float)dot, group after group, to a running sum held in a register,
 * 2 rows x 32 columns (4 sums) at a time. c[g][32 i + j] holds the int32 dot of group g0 + g for row
 * m + i and column n0 + j; sw[g][j] its weight scale. The sum starts from 0 (first) or from y, and
 * gets the bias after the layer's last group (last). */
static inline void tl_linear_s8_amx_sums(const int32_t (*c)[32 * 32], size_t gc, const float (*sw)[32],
                                         const float *x_scale, const float *b, float *y,
                                         size_t M, size_t N, size_t G, size_t m, size_t n0, size_t g0,
                                         const __mmask16 lanes[2], int first, int last)
{
    size_t i, g;
    for (i = 0; i < 32 && m + i < M; i += 2) {
        size_t r1 = m + i + 1 < M ? i + 1 : i;    /* a last odd row: computed twice */
        const float *sx0 = x_scale + (m + i) * G + g0, *sx1 = x_scale + (m + r1) * G + g0;
        float *y0 = y + (m + i) * N + n0, *y1 = y + (m + r1) * N + n0;
        __m512 a00 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes[0], y0);
        __m512 a01 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes[1], y0 + 16);
        __m512 a10 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes[0], y1);
        __m512 a11 = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes[1], y1 + 16);
        for (g = 0; g < gc; g++) {
            const __m512 w0 = _mm512_loadu_ps(sw[g]), w1 = _mm512_loadu_ps(sw[g] + 16);
            const __m512 s0 = _mm512_set1_ps(sx0[g]), s1 = _mm512_set1_ps(sx1[g]);
            const int32_t *c0 = c[g] + 32 * i, *c1 = c[g] + 32 * r1;
#define TL_AMX_ADD(acc, s, w, p)                                                                    \
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(s, w),                                     \
                                           _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)(p)))))
            TL_AMX_ADD(a00, s0, w0, c0);
            TL_AMX_ADD(a01, s0, w1, c0 + 16);
            TL_AMX_ADD(a10, s1, w0, c1);
            TL_AMX_ADD(a11, s1, w1, c1 + 16);
#undef TL_AMX_ADD
        }
        if (last && b) {
            __m512 b0 = _mm512_maskz_loadu_ps(lanes[0], b + n0), b1 = _mm512_maskz_loadu_ps(lanes[1], b + n0 + 16);
            a00 = _mm512_add_ps(a00, b0);
            a01 = _mm512_add_ps(a01, b1);
            a10 = _mm512_add_ps(a10, b0);
            a11 = _mm512_add_ps(a11, b1);
        }
        _mm512_mask_storeu_ps(y0, lanes[0], a00);
        _mm512_mask_storeu_ps(y0 + 16, lanes[1], a01);
        _mm512_mask_storeu_ps(y1, lanes[0], a10);
        _mm512_mask_storeu_ps(y1 + 16, lanes[1], a11);
    }
}

/* The int32 dots of gc consecutive groups of group_size <= 64 bytes (one tile step each) for rows
 * m .. m + 31 of x_q (the first group at column k0) and the 32 packed rows at bp (group g at
 * bp + g * 2 * 16 * group_size): c[g] as tl_gemm_s8_amx_block would give them, group after group, but with the
 * A and B tiles of group g + 1 loaded before group g's sums are stored, so that those loads do not wait
 * behind the stores (which wait for the multiplications). */
static inline void tl_linear_s8_amx_tiles(const int8_t *x_q, size_t M, size_t K, size_t m, size_t k0,
                                          size_t group_size, const int8_t *bp, size_t gc, int32_t (*c)[32 * 32])
{
    __m512i pad_lines[2 * 16];                    /* zero-padded A tiles, 64-byte aligned */
    int8_t *pad0 = (int8_t *)(void *)pad_lines, *pad1 = pad0 + 16 * 64;
    size_t g, s0, s1;
    const int8_t *a0 = tl_gemm_s8_amx_rows(x_q, M, K, m, k0, group_size, pad0, &s0);
    const int8_t *a1 = tl_gemm_s8_amx_rows(x_q, M, K, m + 16, k0, group_size, pad1, &s1);
    __asm__ __volatile__("" : : : "memory");     /* the pads are written before the loads */
    _tile_loadd(4, a0, s0);
    _tile_loadd(5, a1, s1);
    _tile_loadd(6, bp, 64);
    _tile_loadd(7, bp + 16 * group_size, 64);
    __asm__ __volatile__("" : : : "memory");     /* the loads read the pads before they change */
    for (g = 0; g < gc; g++) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
        if (g + 1 < gc) {                         /* the next group's tiles */
            const int8_t *bn = bp + (g + 1) * 2 * 16 * group_size;
            a0 = tl_gemm_s8_amx_rows(x_q, M, K, m, k0 + (g + 1) * group_size, group_size, pad0, &s0);
            a1 = tl_gemm_s8_amx_rows(x_q, M, K, m + 16, k0 + (g + 1) * group_size, group_size, pad1, &s1);
            __asm__ __volatile__("" : : : "memory");
            _tile_loadd(4, a0, s0);
            _tile_loadd(5, a1, s1);
            _tile_loadd(6, bn, 64);
            _tile_loadd(7, bn + 16 * group_size, 64);
            __asm__ __volatile__("" : : : "memory");   /* the loads read the pads before they change */
        }
        _tile_stored(0, c[g], 128);
        _tile_stored(1, c[g] + 16, 128);
        _tile_stored(2, c[g] + 16 * 32, 128);
        _tile_stored(3, c[g] + 16 * 32 + 16, 128);
    }
    __asm__ __volatile__("" : : : "memory");     /* c is read after the stores */
}

/* Groups on tiles: blocks of 32 rows of w_q and as many whole groups as fit TL_AMX_KC columns
 * (packed once, with their weight scales transposed into sw), met by every 32 rows of x_q, a chunk
 * of TL_AMX_GROUPS groups at a time: their int32 dots go through the tiles into one half of c, then
 * tl_linear_s8_amx_sums turns the previous chunk's (in the other half) into floats -- the tile unit
 * and the vector units work at the same time. (4 groups: the two halves, 32 KB, stay in L1.) The
 * running sums of earlier chunks wait in y (a float store and load: exact). */
#define TL_AMX_GROUPS 4
static void tl_linear_s8_amx_groups(const int8_t *restrict x_q, const float *restrict x_scale,
                                    const int8_t *restrict w_q, const float *restrict w_scale,
                                    const float *restrict b, float *restrict y,
                                    size_t M, size_t N, size_t K, size_t group_size)
{
    __m512i bp_lines[32 * TL_AMX_KC / 64], c_lines[2 * TL_AMX_GROUPS * 32 * 32 / 16];   /* 64-byte aligned */
    int8_t *bp = (int8_t *)(void *)bp_lines;      /* a row of a tile: one cache line */
    int32_t (*c)[TL_AMX_GROUPS][32 * 32] = (int32_t (*)[TL_AMX_GROUPS][32 * 32])(void *)c_lines;
                                                  /* c[h][g][32 i + j]: row m + i, column n0 + j */
    float sw[TL_AMX_KC / 4][32];                  /* sw[g][j] = w_scale[n0 + j, g0 + g] */
    size_t G = K / group_size, step = group_size < 64 ? group_size : 64;
    size_t per_block = TL_AMX_KC / group_size, n0, g0, g1, g, m, j;
    tl_amx_configure(step);
    for (n0 = 0; n0 < N; n0 += 32) {
        size_t nr = N - n0 < 32 ? N - n0 : 32;
        __mmask16 lanes[2];                       /* the columns n0 .. n0 + nr - 1 of y */
        lanes[0] = tl_dot_s8_avx512_lanes16(nr);
        lanes[1] = tl_dot_s8_avx512_lanes16(nr > 16 ? nr - 16 : 0);
        for (g0 = 0; g0 < G; g0 += per_block) {
            size_t ng = G - g0 < per_block ? G - g0 : per_block;
            tl_gemm_s8_amx_pack(w_q + n0 * K, K, nr, g0 * group_size, ng * group_size, step, bp);
            for (g = 0; g < ng; g++)
                for (j = 0; j < 32; j++)
                    sw[g][j] = j < nr ? w_scale[(n0 + j) * G + g0 + g] : 0.0f;
            __asm__ __volatile__("" : : : "memory");   /* bp is written before the tile loads */
            for (m = 0; m < M; m += 32)
                for (g1 = 0; g1 < ng + TL_AMX_GROUPS; g1 += TL_AMX_GROUPS) {
                    size_t h = g1 / TL_AMX_GROUPS % 2, p = g1 - TL_AMX_GROUPS;   /* p: the previous chunk */
                    if (group_size <= 64 && g1 < ng)     /* one tile step per group */
                        tl_linear_s8_amx_tiles(x_q, M, K, m, (g0 + g1) * group_size, group_size,
                                               bp + g1 * 2 * 16 * group_size,
                                               ng - g1 < TL_AMX_GROUPS ? ng - g1 : TL_AMX_GROUPS, c[h]);
                    else
                        for (g = 0; g1 + g < ng && g < TL_AMX_GROUPS; g++)
                            tl_gemm_s8_amx_block(x_q, M, K, m, (g0 + g1 + g) * group_size, group_size, step,
                                                 bp + (g1 + g) * (group_size / step) * 2 * 16 * step, c[h][g]);
                    if (g1 > 0) {
                        size_t gc = ng - p < TL_AMX_GROUPS ? ng - p : TL_AMX_GROUPS;
                        tl_linear_s8_amx_sums((const int32_t (*)[32 * 32])c[1 - h], gc,
                                              (const float (*)[32])(sw + p), x_scale, b, y, M, N, G, m, n0, g0 + p,
                                              lanes, g0 + p == 0, g0 + p + gc == G);
                    }
                }
        }
    }
    _tile_release();
}

/* One group per row: the int32 dots on tiles into y's memory, then the VNNI path's per-channel
 * epilogue (simd/linear_s8_avx512.h) makes them y = (0 + (x_scale * w_scale) * (float)dot) + b in place. */
static void tl_linear_s8_amx_channel(const int8_t *restrict x_q, const float *restrict x_scale,
                                     const int8_t *restrict w_q, const float *restrict w_scale,
                                     const float *restrict b, float *restrict y, size_t M, size_t N, size_t K)
{
    tl_gemm_s8_amx(x_q, w_q, (int32_t *)(void *)y, M, N, K);
    tl_linear_s8_avx512_scale_dots(x_scale, w_scale, b, y, M, N);
}

static void tl_linear_s8_amx(const int8_t *restrict x_q, const float *restrict x_scale,
                             const int8_t *restrict w_q, const float *restrict w_scale,
                             const float *restrict b, float *restrict y,
                             size_t M, size_t N, size_t K, size_t group_size)
{
    int tiles_fit = group_size % 4 == 0 && (group_size <= 64 || group_size % 64 == 0) && group_size <= TL_AMX_KC;
    if (M >= 16 && K > 0 && group_size == K)
        tl_linear_s8_amx_channel(x_q, x_scale, w_q, w_scale, b, y, M, N, K);
    else if (M >= 16 && K > 0 && tiles_fit)
        tl_linear_s8_amx_groups(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
    else
        tl_linear_s8_avx512(x_q, x_scale, w_q, w_scale, b, y, M, N, K, group_size);
}
