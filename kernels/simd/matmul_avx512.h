/* simd/matmul_avx512.h -- the AVX-512 matmul, written once for fp32 and fp16 storage: the body of
 * simd/matmul_f32_avx512.h and simd/matmul_f16_avx512.h (which include simd/matmul_avx2.h first,
 * for the few-rows path).
 *
 * A template: the including file defines
 *     TL_T               the element type of x and w (float, or uint16_t holding binary16)
 *     TL_LOAD16(p, n)    the first n (<= 16) elements at p as a __m512 of floats, zeros past n
 *                        (a masked load: nothing past p + n is read)
 *     TL_NAME            the name of the function to define; its helpers are TL_NAME followed by _<what>
 *     TL_SMALL           the function for few rows of x (the AVX2 template's tl_matmul_<storage>_avx2)
 *
 * y (M, N) = x (M, K) @ w (N, K).T (+ b), fp32 math, in the classic three-level blocking (Goto, BLIS):
 *
 *   for each block of NC rows of w and KC columns:      pack it, transposed and as fp32, into bp (L2)
 *     for each TL_GEMM_MR rows of x:                         pack them (KC columns, fp32) into ap (L1)
 *       for each TL_GEMM_NR rows of the block of w:          the TL_GEMM_MR x TL_GEMM_NR micro-kernel
 *
 * The micro-kernel keeps a 12 x 32 tile of y in 24 zmm registers: each step k loads 2 vectors of 16
 * values of the packed w (w[n0 .. n0 + 31, k]) and meets 12 values of x broadcast from the packed
 * rows: 24 fused multiply-adds for 2 loads and 12 broadcasts. Both operands are read in order from
 * contiguous buffers, so the hardware prefetchers keep up; the conversion from fp16 happens once, in
 * the packing (fp16 storage, fp32 accumulation).
 *
 * The block sizes come from the cache sizes of the build machine (kernels/build.py reads them and
 * passes -DTL_L1D_BYTES=... -DTL_L2_BYTES=...; the defaults below are for any other build):
 *   KC: the packed rows of x, TL_GEMM_MR x KC floats, take at most half the L1 data cache (the other half
 *       streams the packed w): KC = L1D / 2 / (4 * TL_GEMM_MR), a multiple of 16, at most 512.
 *   NC: the packed block of w, KC x NC floats, takes at most half the L2 and at most 512 KB (it is
 *       on the stack: no malloc): NC = min(L2 / 2, 512 KB) / (4 * KC), a multiple of TL_GEMM_NR.
 * e.g. 48 KB L1D, 2 MB L2 (Intel Sapphire Rapids): KC = 512, NC = 256; 32 KB, 1 MB (AMD Zen 4):
 * KC = 336, NC = 384.
 * The same loops give tinylm_matmul_nn_f32's y = x @ w for a w stored K-first, (K, N): only the packing
 * of w differs (plain row loads instead of 16 x 16 transposes), the packed block and the micro-kernel
 * are the same.
 * Edges: rows of x past M and rows of w past N are packed as zeros (their results are not stored;
 * the last columns of a tile are stored with a lane mask); K is cut in blocks of KC, whose sums
 * are added into y one after the other. The bias is added last.
 */

#ifndef TL_MATMUL_AVX512_BLOCKS
#define TL_MATMUL_AVX512_BLOCKS

#ifndef TL_L1D_BYTES
#define TL_L1D_BYTES 32768                 /* the L1 data cache, when the build did not say */
#endif
#ifndef TL_L2_BYTES
#define TL_L2_BYTES 1048576                /* the L2 (per core), when the build did not say */
#endif

#define TL_GEMM_MR 12                            /* rows of x per tile */
#define TL_GEMM_NR 32                            /* rows of w per tile: 2 vectors of 16 lanes */
#define TL_GEMM_KC_FIT (TL_L1D_BYTES / 2 / (4 * TL_GEMM_MR) / 16 * 16)
#define TL_GEMM_KC (TL_GEMM_KC_FIT > 512 ? 512 : TL_GEMM_KC_FIT < 64 ? 64 : TL_GEMM_KC_FIT)
#define TL_GEMM_NC_BYTES (TL_L2_BYTES / 2 > 524288 ? 524288 : TL_L2_BYTES / 2)
#define TL_GEMM_NC_FIT (TL_GEMM_NC_BYTES / (4 * TL_GEMM_KC) / TL_GEMM_NR * TL_GEMM_NR)
#define TL_GEMM_NC (TL_GEMM_NC_FIT < TL_GEMM_NR ? TL_GEMM_NR : TL_GEMM_NC_FIT)

/* out[t] (lane i) = lane t of r[i]: a 16 x 16 transpose of floats in registers (64 shuffles) */
static inline void tl_matmul_avx512_transpose16(__m512 r[16])
{
    __m512 t[16];
    size_t i;
    for (i = 0; i < 16; i += 2) {         /* per 128 bits: rows i, i+1 at lanes 0, 1 | 2, 3 */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (i = 0; i < 16; i += 4) {         /* per 128 bits: rows i .. i+3 at lane 0 | 1 | 2 | 3 */
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (i = 0; i < 4; i++) {             /* 128-bit blocks of rows 0-3, 4-7 | rows 8-11, 12-15 */
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (i = 0; i < 4; i++) {             /* lane 4 q + i from the 128-bit block q of every row */
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* c[i][v] += sum over k < kc of ap[k * TL_GEMM_MR + i] * bp[k * TL_GEMM_NR + 16 v + 0..15]: the 12 x 32 tile.
 * The loops over i and v have constant bounds: the compiler unrolls them and keeps c in registers. */
static inline void tl_matmul_avx512_tile(const float *ap, const float *bp, size_t kc,
                                          __m512 c[TL_GEMM_MR][2])
{
    __m512 acc[TL_GEMM_MR][2];
    size_t i, k;
    for (i = 0; i < TL_GEMM_MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (k = 0; k < kc; k++, ap += TL_GEMM_MR, bp += TL_GEMM_NR) {
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        for (i = 0; i < TL_GEMM_MR; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    for (i = 0; i < TL_GEMM_MR; i++) {
        c[i][0] = acc[i][0];
        c[i][1] = acc[i][1];
    }
}

#endif /* TL_MATMUL_AVX512_BLOCKS */

#ifndef TL_CAT
#define TL_CAT_(a, b) a##b
#define TL_CAT(a, b) TL_CAT_(a, b)     /* TL_CAT(name, _pack) -> name_pack */
#endif

/* Pack rows n0 .. n0 + nc - 1 of w (nc <= TL_GEMM_NC; rows past N are zeros), columns k0 .. k0 + kc - 1,
 * as fp32 into bp: sliver s (rows n0 + 32 s ...) at bp + s * kc * 32, bp[k * 32 + j] = w[n0 + 32 s + j,
 * k0 + k]. 16 rows x 16 columns at a time are loaded as stored and transposed in registers. */
static void TL_CAT(TL_NAME, _pack_w)(const TL_T *w, size_t N, size_t K, size_t n0, size_t nc, size_t k0,
                                     size_t kc, float *bp)
{
    size_t s, h, k, i;
    for (s = 0; s * TL_GEMM_NR < nc; s++) {
        float *out = bp + s * kc * TL_GEMM_NR;
        for (h = 0; h < TL_GEMM_NR; h += 16) {
            size_t row0 = n0 + s * TL_GEMM_NR + h;
            for (k = 0; k < kc; k += 16) {
                size_t n = kc - k < 16 ? kc - k : 16;
                __m512 r[16];
                for (i = 0; i < 16; i++)
                    r[i] = row0 + i < N ? TL_LOAD16(w + (row0 + i) * K + k0 + k, n) : _mm512_setzero_ps();
                tl_matmul_avx512_transpose16(r);
                for (i = 0; i < n; i++)
                    _mm512_storeu_ps(out + (k + i) * TL_GEMM_NR + h, r[i]);
            }
        }
    }
}

/* The same packing for a w stored K-first, w (K, N) row-major (tinylm_matmul_nn_f32's b): bp[k * 32 + j]
 * = w[k0 + k, n0 + 32 s + j]. Each step k reads 32 consecutive values of a row of w: no transpose. */
static void TL_CAT(TL_NAME, _pack_w_kn)(const TL_T *w, size_t N, size_t n0, size_t nc, size_t k0, size_t kc,
                                        float *bp)
{
    size_t s, h, k;
    for (s = 0; s * TL_GEMM_NR < nc; s++) {
        float *out = bp + s * kc * TL_GEMM_NR;
        for (h = 0; h < TL_GEMM_NR; h += 16) {
            size_t col0 = n0 + s * TL_GEMM_NR + h, n = col0 >= N ? 0 : N - col0 < 16 ? N - col0 : 16;
            for (k = 0; k < kc; k++)
                _mm512_storeu_ps(out + k * TL_GEMM_NR + h,
                                 n ? TL_LOAD16(w + (k0 + k) * N + col0, n) : _mm512_setzero_ps());
        }
    }
}

/* Pack rows m .. m + mr - 1 of x (mr <= TL_GEMM_MR; the other rows of the tile are zeros), columns
 * k0 .. k0 + kc - 1, as fp32 into ap[k * TL_GEMM_MR + i] = x[m + i, k0 + k]. */
static void TL_CAT(TL_NAME, _pack_x)(const TL_T *x, size_t K, size_t m, size_t mr, size_t k0, size_t kc,
                                     float *ap)
{
    const __mmask16 rows = (__mmask16)((1u << TL_GEMM_MR) - 1);
    size_t k, i;
    for (k = 0; k < kc; k += 16) {
        size_t n = kc - k < 16 ? kc - k : 16;
        __m512 r[16];
        for (i = 0; i < 16; i++)
            r[i] = i < mr ? TL_LOAD16(x + (m + i) * K + k0 + k, n) : _mm512_setzero_ps();
        tl_matmul_avx512_transpose16(r);
        for (i = 0; i < n; i++)                   /* lanes 0 .. 11 of column k + i */
            _mm512_mask_storeu_ps(ap + (k + i) * TL_GEMM_MR, rows, r[i]);
    }
}

/* The same packing for an x stored K-first, rows `x_row` apart (tinylm_matmul_tn_f32's x: column m of
 * y is column m of x): ap[k * 12 + i] = x[(k0 + k) * x_row + m + i], 12 consecutive values of a row of x
 * per step k. */
static void TL_CAT(TL_NAME, _pack_x_km)(const TL_T *x, size_t x_row, size_t m, size_t mr, size_t k0, size_t kc,
                                        float *ap)
{
    const __mmask16 rows = (__mmask16)((1u << TL_GEMM_MR) - 1);
    size_t k;
    for (k = 0; k < kc; k++)
        _mm512_mask_storeu_ps(ap + k * TL_GEMM_MR, rows, TL_LOAD16(x + (k0 + k) * x_row + m, mr));
}

/* y = x @ w.T without the bias, x (M, K) and w (N, K) as stored by nn.Linear; w_k_first: w is (K, N)
 * (y = x @ w); x_k_row > 0: x is K-first too, (K, M) with rows x_k_row apart (y = x.T @ w) */
static void TL_CAT(TL_NAME, _packed)(const TL_T *x, size_t x_k_row, const TL_T *w, int w_k_first, float *y,
                                     size_t M, size_t N, size_t K)
{
    float bp[TL_GEMM_KC * TL_GEMM_NC];                      /* the packed block of w: <= 512 KB of stack */
    float ap[TL_GEMM_KC * TL_GEMM_MR];                      /* TL_GEMM_MR packed rows of x */
    size_t n0, k0, m, s, i, v;
    for (n0 = 0; n0 < N; n0 += TL_GEMM_NC) {
        size_t nc = N - n0 < TL_GEMM_NC ? N - n0 : TL_GEMM_NC;
        for (k0 = 0; k0 < K; k0 += TL_GEMM_KC) {
            size_t kc = K - k0 < TL_GEMM_KC ? K - k0 : TL_GEMM_KC;
            if (w_k_first)
                TL_CAT(TL_NAME, _pack_w_kn)(w, N, n0, nc, k0, kc, bp);
            else
                TL_CAT(TL_NAME, _pack_w)(w, N, K, n0, nc, k0, kc, bp);
            for (m = 0; m < M; m += TL_GEMM_MR) {
                size_t mr = M - m < TL_GEMM_MR ? M - m : TL_GEMM_MR;
                if (x_k_row)
                    TL_CAT(TL_NAME, _pack_x_km)(x, x_k_row, m, mr, k0, kc, ap);
                else
                    TL_CAT(TL_NAME, _pack_x)(x, K, m, mr, k0, kc, ap);
                for (s = 0; s * TL_GEMM_NR < nc; s++) {
                    size_t ns = n0 + s * TL_GEMM_NR, nr = N - ns < TL_GEMM_NR ? N - ns : TL_GEMM_NR;
                    __mmask16 lanes[2];           /* the columns ns .. ns + nr - 1 of y */
                    __m512 c[TL_GEMM_MR][2];
                    lanes[0] = (__mmask16)(nr >= 16 ? 0xffffu : (1u << nr) - 1);
                    lanes[1] = (__mmask16)(nr >= 32 ? 0xffffu : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
                    tl_matmul_avx512_tile(ap, bp + s * kc * TL_GEMM_NR, kc, c);
                    for (i = 0; i < mr; i++)
                        for (v = 0; v < 2; v++) {
                            float *yr = y + (m + i) * N + ns + 16 * v;
                            if (k0)
                                c[i][v] = _mm512_add_ps(c[i][v], _mm512_maskz_loadu_ps(lanes[v], yr));
                            _mm512_mask_storeu_ps(yr, lanes[v], c[i][v]);
                        }
                }
            }
        }
    }
}

static void TL_NAME(const TL_T *restrict x, const TL_T *restrict w, const float *restrict b,
                    float *restrict y, size_t M, size_t N, size_t K)
{
    size_t m, n;
    if (M < 6 || K == 0) {                        /* a token at a time: dot products on w as stored */
        TL_SMALL(x, w, b, y, M, N, K);
        return;
    }
    TL_CAT(TL_NAME, _packed)(x, 0, w, 0, y, M, N, K);
    if (b)
        for (m = 0; m < M; m++)
            for (n = 0; n < N; n++)
                y[m * N + n] += b[n];
}
