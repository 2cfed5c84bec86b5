/* simd/matmul_avx2.h -- the AVX2 + FMA matmul, written once for fp32 and fp16 storage: the body
 * of simd/matmul_f32_avx2.h and simd/matmul_f16_avx2.h.
 *
 * A template: the including file defines
 *     TL_T          the element type of x and w (float, or uint16_t holding binary16)
 *     TL_LOAD8(p)   an expression loading 8 consecutive elements at p as a __m256 of floats
 *     TL_SCALAR(v)  one element as a float
 *     TL_AS_F32(row, buf, n)  n elements of a row of x as fp32: the row itself, or converted in buf
 *     TL_NAME       the name of the function to define (tl_matmul_<storage>_avx2); its helpers are
 *                   TL_NAME followed by _<what>
 *
 * y (M, N) = x (M, K) @ w (N, K).T (+ b), fp32 math, two ways:
 *   M < 6 (a token at a time): dot products read along K as stored, a 2 x 4 tile of y per step
 *     (2 rows of x against 4 rows of w: 8 accumulators of 8 partial sums, summed at the end), or
 *     1 x 8 for an odd last row (one token: each load of x serves 8 rows of w).
 *   M >= 6: w is packed 16 rows at a time into transposed panels on the stack (converted to
 *     fp32 on the way; two panels, 64 KB), and a 6 x 16 tile of y is computed per step: 6 broadcast
 *     values of x times 2 vectors of the panel, 12 FMAs into 12 accumulators (the classic BLIS-style
 *     micro-kernel).
 * Edges: rows past M or N reuse the last valid row (those results are not stored), and the last
 * K % 8 values of a dot product go through a zero-padded copy. The bias is added last.
 */

#ifndef TL_CAT
#define TL_CAT_(a, b) a##b
#define TL_CAT(a, b) TL_CAT_(a, b)     /* TL_CAT(name, _3x4) -> name_3x4 */
#endif

/* 4 accumulators -> (sum of a0, sum of a1, sum of a2, sum of a3) */
static inline __m128 TL_CAT(TL_NAME, _hsum4)(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* out[i] = (x_i . w_0, x_i . w_1, x_i . w_2, x_i . w_3) over kc values, for the 2 rows x_i */
static inline void TL_CAT(TL_NAME, _2x4)(const TL_T *x0, const TL_T *x1, const TL_T *w0,
                                         const TL_T *w1, const TL_T *w2, const TL_T *w3,
                                         size_t kc, __m128 out[2])
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    size_t k = 0;
/* one step: 8 values of the 2 x rows and the 4 w rows, 8 fused multiply-adds */
#define TL_STEP(px0, px1, pw0, pw1, pw2, pw3)                                                       \
    {                                                                                            \
        __m256 a0 = TL_LOAD8(px0), a1 = TL_LOAD8(px1), b;                                        \
        b = TL_LOAD8(pw0);                                                                       \
        c00 = _mm256_fmadd_ps(a0, b, c00); c10 = _mm256_fmadd_ps(a1, b, c10);                    \
        b = TL_LOAD8(pw1);                                                                       \
        c01 = _mm256_fmadd_ps(a0, b, c01); c11 = _mm256_fmadd_ps(a1, b, c11);                    \
        b = TL_LOAD8(pw2);                                                                       \
        c02 = _mm256_fmadd_ps(a0, b, c02); c12 = _mm256_fmadd_ps(a1, b, c12);                    \
        b = TL_LOAD8(pw3);                                                                       \
        c03 = _mm256_fmadd_ps(a0, b, c03); c13 = _mm256_fmadd_ps(a1, b, c13);                    \
    }
    for (; k + 8 <= kc; k += 8)
        TL_STEP(x0 + k, x1 + k, w0 + k, w1 + k, w2 + k, w3 + k)
    if (k < kc) {                                     /* the last kc % 8 values, zero-padded */
        const TL_T *rows[6];
        TL_T pad[6][8];
        size_t r, j;
        rows[0] = x0; rows[1] = x1; rows[2] = w0; rows[3] = w1; rows[4] = w2; rows[5] = w3;
        for (r = 0; r < 6; r++)
            for (j = 0; j < 8; j++)
                pad[r][j] = k + j < kc ? rows[r][k + j] : (TL_T)0;
        TL_STEP(pad[0], pad[1], pad[2], pad[3], pad[4], pad[5])
    }
#undef TL_STEP
    out[0] = TL_CAT(TL_NAME, _hsum4)(c00, c01, c02, c03);
    out[1] = TL_CAT(TL_NAME, _hsum4)(c10, c11, c12, c13);
}

/* out[0..7] = (x . w_0, ..., x . w_7) over kc values: one row of x (a single token) against 8 rows
 * of w, so each (converted) load of x serves 8 FMAs. */
static inline void TL_CAT(TL_NAME, _1x8)(const TL_T *x0, const TL_T *const wr[8], size_t kc,
                                         __m128 out[2])
{
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    const TL_T *w0 = wr[0], *w1 = wr[1], *w2 = wr[2], *w3 = wr[3];
    const TL_T *w4 = wr[4], *w5 = wr[5], *w6 = wr[6], *w7 = wr[7];
    size_t k = 0;
#define TL_STEP8(px, p0, p1, p2, p3, p4, p5, p6, p7)                                               \
    {                                                                                            \
        __m256 a = TL_LOAD8(px);                                                                 \
        c0 = _mm256_fmadd_ps(a, TL_LOAD8(p0), c0); c1 = _mm256_fmadd_ps(a, TL_LOAD8(p1), c1);    \
        c2 = _mm256_fmadd_ps(a, TL_LOAD8(p2), c2); c3 = _mm256_fmadd_ps(a, TL_LOAD8(p3), c3);    \
        c4 = _mm256_fmadd_ps(a, TL_LOAD8(p4), c4); c5 = _mm256_fmadd_ps(a, TL_LOAD8(p5), c5);    \
        c6 = _mm256_fmadd_ps(a, TL_LOAD8(p6), c6); c7 = _mm256_fmadd_ps(a, TL_LOAD8(p7), c7);    \
    }
    for (; k + 8 <= kc; k += 8)
        TL_STEP8(x0 + k, w0 + k, w1 + k, w2 + k, w3 + k, w4 + k, w5 + k, w6 + k, w7 + k)
    if (k < kc) {                                     /* the last kc % 8 values, zero-padded */
        TL_T pad[9][8];
        size_t r, j;
        for (j = 0; j < 8; j++)
            pad[0][j] = k + j < kc ? x0[k + j] : (TL_T)0;
        for (r = 0; r < 8; r++)
            for (j = 0; j < 8; j++)
                pad[r + 1][j] = k + j < kc ? wr[r][k + j] : (TL_T)0;
        TL_STEP8(pad[0], pad[1], pad[2], pad[3], pad[4], pad[5], pad[6], pad[7], pad[8])
    }
#undef TL_STEP8
    out[0] = TL_CAT(TL_NAME, _hsum4)(c0, c1, c2, c3);
    out[1] = TL_CAT(TL_NAME, _hsum4)(c4, c5, c6, c7);
}

/* ---- few rows of x (M < 6, e.g. one token at a time): dot products, w read once, as stored ---- */
static void TL_CAT(TL_NAME, _dot)(const TL_T *x, const TL_T *w, float *y, size_t M, size_t N, size_t K)
{
    size_t m, n0, i, j;
    if (M % 2) {                                      /* the odd row: 1 x 8 tiles */
        const TL_T *xr = x + (M - 1) * K;
        for (n0 = 0; n0 < N; n0 += 8) {
            const TL_T *wr[8];
            __m128 out[2];
            float tmp[8];
            size_t n_valid = N - n0 < 8 ? N - n0 : 8;
            for (j = 0; j < 8; j++)
                wr[j] = w + (n0 + (j < n_valid ? j : n_valid - 1)) * K;
            TL_CAT(TL_NAME, _1x8)(xr, wr, K, out);
            _mm_storeu_ps(tmp, out[0]);
            _mm_storeu_ps(tmp + 4, out[1]);
            for (j = 0; j < n_valid; j++)
                y[(M - 1) * N + n0 + j] = tmp[j];
        }
        M -= 1;                                       /* the even rows below, 2 x 4 tiles */
    }
    for (n0 = 0; n0 < N; n0 += 4) {
        const TL_T *wr[4];
        size_t n_valid = N - n0 < 4 ? N - n0 : 4;
        for (j = 0; j < 4; j++)
            wr[j] = w + (n0 + (j < n_valid ? j : n_valid - 1)) * K;
        for (m = 0; m < M; m += 2) {
            __m128 out[2];
            size_t m_valid = M - m < 2 ? M - m : 2;
            TL_CAT(TL_NAME, _2x4)(x + m * K, x + (m + m_valid - 1) * K, wr[0], wr[1], wr[2], wr[3], K, out);
            for (i = 0; i < m_valid; i++) {
                float tmp[4];
                _mm_storeu_ps(tmp, out[i]);
                for (j = 0; j < n_valid; j++)
                    y[(m + i) * N + n0 + j] = tmp[j];
            }
        }
    }
}

/* ---- many rows: pack a panel of 16 rows of w, then a 6 x 16 tile of y per step -------------------
 * The panel wp holds w[n0:n0+16, k0:k0+kc] transposed, wp[k*16 + j] = w[n0 + j, k0 + k] (rows past N
 * are zero), so one k step loads 16 consecutive floats (2 vectors) and meets 6 broadcast values
 * of x: 12 FMAs into 12 accumulators. The panels stay in L1/L2 while all of x goes by. */
/* c[i] = 16 sums over k < kc of a_i[k] * wp[k*16 + 0..15], for the 6 rows a_i. The 12
 * accumulators are named variables so that the compiler keeps them in registers. */
static inline void TL_CAT(TL_NAME, _6x16)(const float *a0, const float *a1, const float *a2,
                                          const float *a3, const float *a4, const float *a5,
                                          const float *wp, size_t kc, __m256 c[6][2])
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    size_t k;
    for (k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(wp + k * 16), b1 = _mm256_loadu_ps(wp + k * 16 + 8), ai;
        ai = _mm256_broadcast_ss(a0 + k); c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a1 + k); c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a2 + k); c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a3 + k); c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a4 + k); c40 = _mm256_fmadd_ps(ai, b0, c40); c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a5 + k); c50 = _mm256_fmadd_ps(ai, b0, c50); c51 = _mm256_fmadd_ps(ai, b1, c51);
    }
    c[0][0] = c00; c[0][1] = c01; c[1][0] = c10; c[1][1] = c11; c[2][0] = c20; c[2][1] = c21;
    c[3][0] = c30; c[3][1] = c31; c[4][0] = c40; c[4][1] = c41; c[5][0] = c50; c[5][1] = c51;
}

#define TL_KC 512
#define TL_PANELS 2                                   /* panels packed together: 32 columns of y */

/* Pack (and convert) w[n0:n0+16, k0:k0+kc] into wp[k*16 + j]; rows past N are zeros. */
static void TL_CAT(TL_NAME, _pack)(const TL_T *w, size_t N, size_t K, size_t n0, size_t k0,
                                   size_t kc, float *wp)
{
    size_t j, k, t, nr = N - n0 < 16 ? N - n0 : 16;
    for (j = 0; j < 16; j++) {
        if (j < nr) {
            const TL_T *wr = w + (n0 + j) * K + k0;
            for (k = 0; k + 8 <= kc; k += 8) {
                float v[8];
                _mm256_storeu_ps(v, TL_LOAD8(wr + k));
                for (t = 0; t < 8; t++)
                    wp[(k + t) * 16 + j] = v[t];
            }
            for (; k < kc; k++)
                wp[k * 16 + j] = TL_SCALAR(wr[k]);
        } else {
            for (k = 0; k < kc; k++)
                wp[k * 16 + j] = 0.0f;
        }
    }
}

/* y = x @ w.T without the bias, for M >= 6 */
static void TL_CAT(TL_NAME, _packed)(const TL_T *x, const TL_T *w, float *y, size_t M, size_t N,
                                     size_t K)
{
    float wp[TL_PANELS][TL_KC * 16];                  /* 2 packed panels of w: 64 KB of stack */
    float xb[6][TL_KC];                               /* 6 rows of x as fp32 (fp16 storage only) */
    size_t n0, k0, m, i, j, p;
    for (n0 = 0; n0 < N; n0 += 16 * TL_PANELS) {
        size_t panels = (N - n0 + 15) / 16 < TL_PANELS ? (N - n0 + 15) / 16 : TL_PANELS;
        for (k0 = 0; k0 < K; k0 += TL_KC) {
            size_t kc = K - k0 < TL_KC ? K - k0 : TL_KC;
            for (p = 0; p < panels; p++)
                TL_CAT(TL_NAME, _pack)(w, N, K, n0 + 16 * p, k0, kc, wp[p]);
            for (m = 0; m < M; m += 6) {
                size_t mr = M - m < 6 ? M - m : 6;
                const float *a[6];
                for (i = 0; i < 6; i++) {             /* rows past M repeat the last row */
                    const TL_T *xr = x + (m + (i < mr ? i : mr - 1)) * K + k0;
                    a[i] = TL_AS_F32(xr, xb[i], kc);  /* (fp16: converted once for 2 panels) */
                }
                for (p = 0; p < panels; p++) {
                    size_t np0 = n0 + 16 * p, nr = N - np0 < 16 ? N - np0 : 16;
                    __m256 c[6][2];
                    TL_CAT(TL_NAME, _6x16)(a[0], a[1], a[2], a[3], a[4], a[5], wp[p], kc, c);
                    for (i = 0; i < mr; i++) {
                        float *yr = y + (m + i) * N + np0;
                        if (nr == 16) {
                            if (k0) {
                                c[i][0] = _mm256_add_ps(c[i][0], _mm256_loadu_ps(yr));
                                c[i][1] = _mm256_add_ps(c[i][1], _mm256_loadu_ps(yr + 8));
                            }
                            _mm256_storeu_ps(yr, c[i][0]);
                            _mm256_storeu_ps(yr + 8, c[i][1]);
                        } else {
                            float tmp[16];
                            _mm256_storeu_ps(tmp, c[i][0]);
                            _mm256_storeu_ps(tmp + 8, c[i][1]);
                            for (j = 0; j < nr; j++)
                                yr[j] = k0 ? yr[j] + tmp[j] : tmp[j];
                        }
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
    if (M < 6)
        TL_CAT(TL_NAME, _dot)(x, w, y, M, N, K);
    else
        TL_CAT(TL_NAME, _packed)(x, w, y, M, N, K);
    if (b)
        for (m = 0; m < M; m++)
            for (n = 0; n < N; n++)
                y[m * N + n] += b[n];
}
