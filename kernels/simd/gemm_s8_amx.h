/* simd/gemm_s8_amx.h -- the int8 matmul on AMX tiles (Intel Sapphire Rapids and later: AMX-TILE +
 * AMX-INT8, TL_S8_AMX in dot_s8.h), shared by the AMX variants of matmul_s8 and linear_s8
 * (simd/matmul_s8_amx.h, simd/linear_s8_amx.h). Uses simd/dot_s8_avx512.h and
 * simd/gemm_s8_avx512.h (included before it) for the lane masks and the 16 x 16 word transpose.
 *
 * The OS must have granted the process the tile data state before any tile instruction runs (on
 * Linux, arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); without it the first one faults.
 * The kernels make no OS call: the caller asks (tinylm/kernels/__init__.py through the cffi
 * module's tinylm_host_amx_request, written in kernels/build.py) and calls the _amx entry points
 * only when that succeeded.
 *
 * A tile is up to 16 rows of 64 bytes; TDPBSSD C += A . B multiplies signed bytes by signed bytes
 * and adds in int32 (exact: the sums fit, see tinylm_kernels.h), for
 *     C: 16 x 16 int32 (16 rows of x by 16 rows of w),  A: 16 rows of x, 64 bytes of K each,
 *     B: 16 "rows" of 4 consecutive k, each holding those 4 bytes of 16 rows of w (64 bytes).
 * A is x as stored (a tile load takes a row stride). B is w packed: for 16 rows of w and 64
 * columns, B row r, word j = the bytes w[n0 + j, k + 4r .. k + 4r + 3] -- a 16 x 16 transpose of
 * 32-bit words, tl_gemm_s8_avx512_transpose16. Eight tiles: a 32 x 32 block of y in four C tiles
 * (0..3), two A tiles (4, 5: rows m .. m+15, m+16 .. m+31), two B tiles (6, 7: rows n0 .. n0+15,
 * n0+16 .. n0+31 of w); each step of 64 columns is 4 tile loads and 4 TDPBSSD (the classic 2 x 2
 * register blocking of a matmul, with tiles for registers). tl_gemm_s8_amx loads each step's tiles
 * right after the previous step's multiplications, and a block's first tiles before the previous
 * block's sums are stored: the loads do not queue behind those stores (512^3: ~0.134 -> ~0.128 ms).
 *
 * Edges: w is packed with zeros past K (and rows past N repeat the last row; those columns of y are
 * not stored); an A tile reads 64 bytes per row, so one whose rows pass M or whose bytes would pass
 * the end of x is first copied, zero-padded, into a 16 x 64 buffer (bytes past K of a row that do
 * exist are read as they are: they meet zeros of w, adding nothing). The tiles are stored to a
 * 32 x 32 int32 buffer and from there the valid part goes to y.
 */
#include <string.h>

#define TL_AMX_KC 2048                  /* columns of w per packed block: 64 KB for 32 rows */

/* the tile configuration: palette 1, eight tiles of 16 rows x 64 bytes, or (group_bytes < 64, a
 * linear_s8 group) A tiles of group_bytes per row and B tiles of group_bytes / 4 rows */
struct tl_amx_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];                 /* bytes per row of tile t */
    uint8_t rows[16];                   /* rows of tile t */
};

static inline void tl_amx_configure(size_t k_bytes)
{
    struct tl_amx_config cfg;
    size_t t;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (t = 0; t < 8; t++) {
        cfg.rows[t] = (uint8_t)(t >= 6 ? k_bytes / 4 : 16);
        cfg.colsb[t] = (uint16_t)(t >= 4 && t < 6 ? k_bytes : 64);
    }
    __asm__ __volatile__("" : : "r"(&cfg) : "memory");   /* the intrinsic reads all 64 bytes */
    _tile_loadconfig(&cfg);
}

/* Pack rows n0 .. n0 + nr - 1 of w (nr <= 32; then the last row repeats), columns k0 .. k0 + kc - 1
 * (zeros past them, up to a multiple of `step` bytes: 64, or a linear_s8 group), as B tiles: step s,
 * half v at bp + (2 s + v) * 16 * step, rows of 64 bytes. */
static void tl_gemm_s8_amx_pack(const int8_t *w, size_t K, size_t nr, size_t k0, size_t kc, size_t step,
                                int8_t *bp)
{
    size_t v, j, k, r;
    for (v = 0; v < 2; v++) {
        const int8_t *rows[16];
        for (j = 0; j < 16; j++)
            rows[j] = w + (16 * v + j < nr ? 16 * v + j : nr - 1) * K + k0;
        for (k = 0; k < kc; k += step) {
            const void *at[16];
            __m512i words[16];
            size_t bytes = kc - k < step ? kc - k : step;
            for (j = 0; j < 16; j++)
                at[j] = rows[j] + k;
            tl_gemm_s8_avx512_transpose16(at, bytes, words);     /* zeros past `bytes` */
            for (r = 0; r < step / 4; r++)
                _mm512_storeu_si512((void *)(bp + (2 * (k / step) + v) * 16 * step + 64 * r), words[r]);
        }
    }
}

/* The A tile of rows m .. m + 15 of x (row stride K) at column k, `bytes` per row: x itself when
 * all 16 rows exist and the last row's bytes end inside x, else a zero-padded copy in pad (16 x 64). */
static inline const int8_t *tl_gemm_s8_amx_rows(const int8_t *x, size_t M, size_t K, size_t m, size_t k,
                                                size_t bytes, int8_t pad[16 * 64], size_t *stride)
{
    size_t i, n;
    if (m + 16 <= M && (m + 15) * K + k + bytes <= M * K) {
        *stride = K;
        return x + m * K + k;
    }
    memset(pad, 0, 16 * 64);
    n = K - k < bytes ? K - k : bytes;
    for (i = 0; i < 16 && m + i < M; i++)
        memcpy(pad + 64 * i, x + (m + i) * K + k, n);
    *stride = 64;
    return pad;
}

/* c (32 x 32 int32, row stride 32) = the exact dots of rows m .. m + 31 of x with the packed rows at
 * bp, over `steps` steps of `step` bytes from column k0 of x (the tiles must be configured for
 * `step`). */
static inline void tl_gemm_s8_amx_block(const int8_t *x, size_t M, size_t K, size_t m, size_t k0, size_t kc,
                                        size_t step, const int8_t *bp, int32_t c[32 * 32])
{
    __m512i pad_lines[2 * 16];                  /* zero-padded A tiles, 64-byte aligned */
    int8_t *pad0 = (int8_t *)(void *)pad_lines, *pad1 = pad0 + 16 * 64;
    size_t s, s0, s1;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (s = 0; s * step < kc; s++) {
        size_t k = k0 + s * step;
        const int8_t *a0 = tl_gemm_s8_amx_rows(x, M, K, m, k, step, pad0, &s0);
        const int8_t *a1 = tl_gemm_s8_amx_rows(x, M, K, m + 16, k, step, pad1, &s1);
        __asm__ __volatile__("" : : : "memory");           /* the pads are written before the loads */
        _tile_loadd(4, a0, s0);
        _tile_loadd(5, a1, s1);
        _tile_loadd(6, bp + 2 * s * 16 * step, 64);
        _tile_loadd(7, bp + (2 * s + 1) * 16 * step, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, c, 128);
    _tile_stored(1, c + 16, 128);
    _tile_stored(2, c + 16 * 32, 128);
    _tile_stored(3, c + 16 * 32 + 16, 128);
    __asm__ __volatile__("" : : : "memory");               /* c is read after the stores */
}

/* Tiles 4 and 5 := rows m .. m + 15 and m + 16 .. m + 31 of x at column k (64 bytes; pads: 2 x 16 x 64
 * bytes for the copies of tl_gemm_s8_amx_rows), tiles 6 and 7 := the packed step at bs. */
static inline void tl_gemm_s8_amx_load(const int8_t *x, size_t M, size_t K, size_t m, size_t k, const int8_t *bs,
                                       int8_t *pads)
{
    size_t s0, s1;
    const int8_t *a0 = tl_gemm_s8_amx_rows(x, M, K, m, k, 64, pads, &s0);
    const int8_t *a1 = tl_gemm_s8_amx_rows(x, M, K, m + 16, k, 64, pads + 16 * 64, &s1);
    __asm__ __volatile__("" : : : "memory");               /* the pads are written before the loads */
    _tile_loadd(4, a0, s0);
    _tile_loadd(5, a1, s1);
    _tile_loadd(6, bs, 64);
    _tile_loadd(7, bs + 16 * 64, 64);
    __asm__ __volatile__("" : : : "memory");               /* the loads read the pads before they change */
}

/* y (M, N) int32 = x @ w.T. For each block of TL_AMX_KC columns, the rows of w are packed in panels
 * of 32, as many as fit TL_AMX_B_BYTES (L2), and every 32 rows of x meet all of them in turn: those
 * rows of x (at most 64 KB) stay in L1 while the packed w streams by in order. The sums of earlier
 * column blocks wait in y (int32 adds: exact). */
#define TL_AMX_B_BYTES 262144               /* the packed panels of w: 256 KB of stack */
static void tl_gemm_s8_amx(const int8_t *x, const int8_t *w, int32_t *y, size_t M, size_t N, size_t K)
{
    __m512i b_lines[TL_AMX_B_BYTES / 64], c_lines[32 * 32 / 16];   /* 64-byte aligned: a row of */
    int8_t *bp = (int8_t *)(void *)b_lines;                         /* a tile is one cache line */
    int32_t *c = (int32_t *)(void *)c_lines;
    __m512i pad_lines[2 * 16];                                      /* zero-padded A tiles */
    int8_t *pads = (int8_t *)(void *)pad_lines;
    size_t k0, n1, m, q, i, v;
    tl_amx_configure(64);
    for (k0 = 0; k0 < K; k0 += TL_AMX_KC) {
        size_t kc = K - k0 < TL_AMX_KC ? K - k0 : TL_AMX_KC;
        size_t steps = (kc + 63) / 64, panel = steps * 2 * 16 * 64;  /* bytes of one packed panel */
        size_t per_block = TL_AMX_B_BYTES / panel;                  /* panels packed together */
        for (n1 = 0; n1 < N; n1 += 32 * per_block) {
            size_t panels = (N - n1 + 31) / 32 < per_block ? (N - n1 + 31) / 32 : per_block;
            for (q = 0; q < panels; q++) {
                size_t n0 = n1 + 32 * q;
                tl_gemm_s8_amx_pack(w + n0 * K, K, N - n0 < 32 ? N - n0 : 32, k0, kc, 64, bp + q * panel);
            }
            __asm__ __volatile__("" : : : "memory");       /* bp is written before the tile loads */
            for (m = 0; m < M; m += 32) {
                tl_gemm_s8_amx_load(x, M, K, m, k0, bp, pads);
                for (q = 0; q < panels; q++) {
                    size_t n0 = n1 + 32 * q, nr = N - n0 < 32 ? N - n0 : 32, s;
                    __mmask16 lanes[2];                     /* the columns n0 .. n0 + nr - 1 of y */
                    lanes[0] = tl_dot_s8_avx512_lanes16(nr);
                    lanes[1] = tl_dot_s8_avx512_lanes16(nr > 16 ? nr - 16 : 0);
                    _tile_zero(0);                          /* the block of y at rows m, columns n0 */
                    _tile_zero(1);
                    _tile_zero(2);
                    _tile_zero(3);
                    for (s = 0; s < steps; s++) {           /* step s's tiles are loaded: multiply, */
                        _tile_dpbssd(0, 4, 6);              /* then load the next step's, or the next */
                        _tile_dpbssd(1, 4, 7);              /* block's first (before this block's */
                        _tile_dpbssd(2, 5, 6);              /* stores, so as not to wait behind them) */
                        _tile_dpbssd(3, 5, 7);
                        if (s + 1 < steps)
                            tl_gemm_s8_amx_load(x, M, K, m, k0 + 64 * (s + 1), bp + q * panel + 2 * (s + 1) * 16 * 64,
                                                pads);
                        else if (q + 1 < panels)
                            tl_gemm_s8_amx_load(x, M, K, m, k0, bp + (q + 1) * panel, pads);
                    }
                    _tile_stored(0, c, 128);
                    _tile_stored(1, c + 16, 128);
                    _tile_stored(2, c + 16 * 32, 128);
                    _tile_stored(3, c + 16 * 32 + 16, 128);
                    __asm__ __volatile__("" : : : "memory");   /* c is read after the stores */
                    for (i = 0; i < 32 && m + i < M; i++)
                        for (v = 0; v < 2; v++) {
                            int32_t *yr = y + (m + i) * N + n0 + 16 * v;
                            __m512i sum = _mm512_loadu_si512((const void *)(c + 32 * i + 16 * v));
                            if (k0)
                                sum = _mm512_add_epi32(sum, _mm512_maskz_loadu_epi32(lanes[v], yr));
                            _mm512_mask_storeu_epi32(yr, lanes[v], sum);
                        }
                }
            }
        }
    }
    _tile_release();
}
