/* simd/linear_s4_avx512.h -- tinylm_linear_s4 with AVX-512 VNNI (F + BW + VNNI: TL_S8_AVX512), after
 * the activations are quantized. linear_s4.c includes it after simd/linear_s4_avx2.h, whose loop
 * takes the shapes this one does not: N < 16, or K not a multiple of 128.
 *
 * 16 rows of w (16 output columns, lane j = column n0 + j) and 128 columns (4 Q4_0 blocks, 64 bytes
 * of a row) per step. One 64-byte load is a row's 4 blocks; its low nibbles are columns 0..15 of
 * each block and its high nibbles columns 16..31, so x_q's 128 columns are regrouped the same way
 * once per step (a_lo, a_hi: two permutes, shared by the 16 rows). As in the AVX2 path, each
 * nibble q becomes the unsigned u = q + 8 ((n ^ 8) & 0xF of the two's complement nibble n, one
 * VPTERNLOG) for VPDPBUSD (unsigned by signed bytes, 4 products added into each int32 lane), and
 * 8 * sum a is subtracted: here by starting each row's sum at -8 * (x_q's 4-lane partial sums),
 * so the lanes of a block add up to that block's exact dot. Lanes 4b..4b+3 of row j's sum hold
 * block b; a 16 x 4 transpose-and-add turns the 16 sums into 4 vectors, dot[b] lane j = row j's
 * dot over block b. Blocks are added into their group's dot (int32, exact), and each group, in
 * order, does the contract's float step lane by lane: the portable loop's bits.
 */

/* dot[b] lane j = sum over block b (columns 32b .. 32b + 31 of the step) of a * q of row j, for the
 * 16 packed rows at w (ldw bytes apart); a_lo / a_hi: the step's activations regrouped as the
 * nibbles are, neg_corr: -8 * their 4-byte partial sums (the same lanes as the rows' sums) */
static inline void tl_dot_s4_avx512_16x4(__m512i a_lo, __m512i a_hi, __m512i neg_corr, const uint8_t *w,
                                         size_t ldw, __m512i dot[4])
{
    const __m512i eight = _mm512_set1_epi8(8), low4 = _mm512_set1_epi8(0x0F);
    __m512i acc[16], s1[8], s2[4], t0, t1, t2, t3;
    size_t j;
    for (j = 0; j < 16; j++) {
        __m512i v = _mm512_loadu_si512((const void *)(w + j * ldw));
        __m512i u_lo = _mm512_ternarylogic_epi32(v, eight, low4, 0x28);               /* (v ^ 8) & 0xF */
        __m512i u_hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), eight, low4, 0x28);
        acc[j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(neg_corr, u_lo, a_lo), u_hi, a_hi);
    }
    /* per 128-bit chunk b: rows 2p, 2p+1 -> [r0 + r2, r0' + r2', r1 + r3, r1' + r3'] (' : row 2p+1) */
    for (j = 0; j < 8; j++)
        s1[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[2 * j], acc[2 * j + 1]),
                                 _mm512_unpackhi_epi32(acc[2 * j], acc[2 * j + 1]));
    /* per chunk b: the whole block sums of rows 4q .. 4q + 3 */
    for (j = 0; j < 4; j++)
        s2[j] = _mm512_add_epi32(_mm512_unpacklo_epi64(s1[2 * j], s1[2 * j + 1]),
                                 _mm512_unpackhi_epi64(s1[2 * j], s1[2 * j + 1]));
    /* transpose the 4 x 4 chunks: dot[b] chunk q = s2[q] chunk b, so lane j is row j */
    t0 = _mm512_shuffle_i32x4(s2[0], s2[1], 0x44);       /* s2[0].c0 c1, s2[1].c0 c1 */
    t1 = _mm512_shuffle_i32x4(s2[0], s2[1], 0xEE);       /* s2[0].c2 c3, s2[1].c2 c3 */
    t2 = _mm512_shuffle_i32x4(s2[2], s2[3], 0x44);
    t3 = _mm512_shuffle_i32x4(s2[2], s2[3], 0xEE);
    dot[0] = _mm512_shuffle_i32x4(t0, t2, 0x88);         /* chunks 0, 2 of each */
    dot[1] = _mm512_shuffle_i32x4(t0, t2, 0xDD);         /* chunks 1, 3 of each */
    dot[2] = _mm512_shuffle_i32x4(t1, t3, 0x88);
    dot[3] = _mm512_shuffle_i32x4(t1, t3, 0xDD);
}

/* sw[c] lane j = s[j * G + c] for c = 0..3, j = 0..15: the scales of 4 consecutive groups of 16 rows
 * (G floats apart), moved, not computed. 16 loads of 4 floats (4 gathers would load 64 floats one
 * at a time): v[q] holds rows q, q + 4, q + 8, q + 12 in its 4 chunks, and a 4 x 4 transpose inside
 * every chunk puts row q + 4c at lane 4c + q, which is lane j = row j. */
static inline void tl_s4_avx512_scales16x4(const float *s, size_t G, __m512 sw[4])
{
    __m512 v[4], t0, t1, t2, t3;
    size_t q;
    for (q = 0; q < 4; q++) {
        __m512 r = _mm512_castps128_ps512(_mm_loadu_ps(s + q * G));
        r = _mm512_insertf32x4(r, _mm_loadu_ps(s + (q + 4) * G), 1);
        r = _mm512_insertf32x4(r, _mm_loadu_ps(s + (q + 8) * G), 2);
        v[q] = _mm512_insertf32x4(r, _mm_loadu_ps(s + (q + 12) * G), 3);
    }
    t0 = _mm512_unpacklo_ps(v[0], v[1]);        /* per chunk: v0[0] v1[0] v0[1] v1[1] */
    t1 = _mm512_unpackhi_ps(v[0], v[1]);        /* per chunk: v0[2] v1[2] v0[3] v1[3] */
    t2 = _mm512_unpacklo_ps(v[2], v[3]);
    t3 = _mm512_unpackhi_ps(v[2], v[3]);
    sw[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    sw[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    sw[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
    sw[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
}

/* 16 output columns at a time (the last 16 overlap the ones before when 16 does not divide N: those
 * outputs are computed twice, the same bits); N >= 16 and K a multiple of 128 */
static void tl_linear_s4_avx512(const int8_t *restrict x_q, const float *restrict x_scale,
                                const uint8_t *restrict w_q4, const float *restrict w_scale,
                                const float *restrict b, float *restrict y,
                                size_t M, size_t N, size_t K, size_t group_size)
{
    const __m512i lo_idx = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13);    /* qwords of columns 0..15 */
    const __m512i hi_idx = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);  /* ... and 16..31 of a block */
    const __m512i eight = _mm512_set1_epi8(8);
    const size_t G = K / group_size, blocks_per_group = group_size / 32;
    /* lane j reads w_scale[(n0 + j) * G + g] (G * 16 < 2^31: K is under 2^31 bytes) */
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)G));
    size_t i, m, k, c;
    for (i = 0; i < N; i += 16) {
        size_t n0 = i + 16 <= N ? i : N - 16;
        const uint8_t *wn = w_q4 + n0 * (K / 2);
        for (m = 0; m < M; m++) {
            const int8_t *xm = x_q + m * K;
            __m512 acc = _mm512_setzero_ps();
            __m512i group_dot = _mm512_setzero_si512();
            size_t g = 0, in_group = 0;
            for (k = 0; k < K; k += 128) {
                __m512i x0 = _mm512_loadu_si512((const void *)(xm + k));
                __m512i x1 = _mm512_loadu_si512((const void *)(xm + k + 64));
                __m512i a_lo = _mm512_permutex2var_epi64(x0, lo_idx, x1);
                __m512i a_hi = _mm512_permutex2var_epi64(x0, hi_idx, x1);
                __m512i corr = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, a_lo),
                                                   eight, a_hi);
                __m512i dot[4];
                tl_dot_s4_avx512_16x4(a_lo, a_hi, _mm512_sub_epi32(_mm512_setzero_si512(), corr), wn + k / 2,
                                      K / 2, dot);
                if (blocks_per_group == 1) {                  /* 4 groups: their scales moved, not gathered */
                    __m512 sw[4];
                    tl_s4_avx512_scales16x4(w_scale + n0 * G + g, G, sw);
                    for (c = 0; c < 4; c++, g++)
                        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(x_scale[m * G + g]), sw[c]),
                                                               _mm512_cvtepi32_ps(dot[c])));
                    continue;
                }
                for (c = 0; c < 4; c++) {                     /* the 4 blocks, in order */
                    group_dot = _mm512_add_epi32(group_dot, dot[c]);
                    if (++in_group == blocks_per_group) {     /* group g is complete */
                        __m512 scale = _mm512_mul_ps(_mm512_set1_ps(x_scale[m * G + g]),
                                                     _mm512_i32gather_ps(rows, w_scale + n0 * G + g, 4));
                        acc = _mm512_add_ps(acc, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(group_dot)));
                        group_dot = _mm512_setzero_si512();
                        in_group = 0;
                        g++;
                    }
                }
            }
            if (b)
                acc = _mm512_add_ps(acc, _mm512_loadu_ps(b + n0));
            _mm512_storeu_ps(y + m * N + n0, acc);
        }
    }
}
