/* tinylm_kernels.h -- the contract of every tinylm C kernel, written once.
 *
 * The NumPy references in tinylm/kernels/reference.py implement exactly these contracts (their
 * docstrings point here); the tests compare the two, bit for bit where a contract says "exact" and
 * within the error bound stated here elsewhere (reference.py holds those bounds as the constants
 * the tests use, and a test checks that they are the numbers written below).
 *
 * Rules every kernel follows, so the same files build for a PC and for a Cortex-M:
 *   - C99, no malloc, no global or static mutable state, no I/O, no libm (own exp, own rounding).
 *   - Row-major arrays. A matrix "x (M, K)" is M*K contiguous elements, x[m*K + k].
 *   - Weights use nn.Linear's layout: w (N, K) = (out_features, in_features); y = x @ w.T + b.
 *   - Outputs never alias inputs (`restrict`). Callers (tinylm/kernels/__init__.py) validate dtypes,
 *     shapes and group sizes before calling: a kernel never checks its arguments.
 *   - fp16 is IEEE binary16 stored in uint16_t; all fp16 math is done in fp32.
 *   - Floating-point expressions are written in the order the references use. Build with
 *     -ffp-contract=off (the default for -std=c99) so the compiler never fuses a*b+c on its own:
 *     the kernels marked "exact" below depend on it. Instruction-set variants (kernels/simd/, chosen
 *     at compile time by __AVX2__, __F16C__, __FMA__, __AVX512F__ / __AVX512BW__ / __AVX512VNNI__
 *     (__AMX_TILE__ / __AMX_INT8__ for the _amx entry points), __ARM_FEATURE_DSP, __ARM_FEATURE_MVE
 *     and the Arm FPU's __fp16 support; tinylm_build_info
 *     names them) compute the same results as the portable C (bit for bit where a contract says
 *     "exact"; the others, within their stated bounds).
 *
 * AArch64 (Raspberry Pi, phones, Apple silicon): __aarch64__ with __ARM_NEON selects the NEON paths
 *   (simd/<family>_neon.h) of matmul_s8, linear_s8 and quantize_s8 (exact; the int8 dots use SDOT
 *   when __ARM_FEATURE_DOTPROD is defined, SMULL/SMLAL2/SADALP otherwise), matmul_f32 and matmul_f16
 *   (FMLA, 4 partial sums per output: within their bound) and the fp16 array conversions
 *   (FCVTN/FCVTL, exact); the scalar fp16 conversions are the FPU's (half.h's TL_F16_HW).
 *   Everything else is the portable C.
 *
 * int8 format: symmetric, zero point 0, values in [-127, 127] (-128 is never produced
 * and is rejected by the Python boundary), one float32 scale per row and per group of `group_size`
 * consecutive columns: real value = q * scale.
 */
#ifndef TINYLM_KERNELS_H
#define TINYLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* cffi-begin: the declarations between these markers are also read by kernels/build.py */

/* ---- fp16 <-> fp32 (half.c) ----------------------------------------------------------------
 * tinylm_f32_to_f16: h[i] = x[i] rounded to the nearest binary16, ties to even. Exact.
 *   |x| >= 65520 (halfway above the largest half, 65504) -> +-inf; +-inf -> +-inf;
 *   tiny values become fp16 subnormals (multiples of 2^-24) or +-0, rounded to nearest even.
 *   NaN -> quiet NaN, same sign, payload = the top 10 payload bits with the quiet bit set:
 *   h = sign | 0x7e00 | (bits >> 13 & 0x3ff).
 * tinylm_f16_to_f32: x[i] = the exact float32 value of h[i] (every half is exactly representable);
 *   subnormal halves are normalised; NaN -> quiet NaN, same sign: sign | 0x7fc00000 | (h & 0x3ff) << 13.
 */
void tinylm_f32_to_f16(const float *x, uint16_t *h, size_t n);
void tinylm_f16_to_f32(const uint16_t *h, float *x, size_t n);

/* ---- fp32 matmul (matmul_f32.c) ---------------------------------------------------------------
 * y (M, N) = x (M, K) @ w (N, K).T (+ b (N,) when b is not NULL), fp32 throughout.
 * Not bit-exact: the rounding of the K products' sum differs between builds (the SIMD paths fuse
 * multiply-adds, and for few rows of x keep 8 partial sums per output). Error bound used by the
 * tests: |y - y_exact| <= K * 2^-23 * sum|x*w| + |y_exact| * 2^-23.
 * IEEE semantics otherwise: a NaN or inf in a row of x / w gives NaN or inf in its outputs.
 * Rows may be split between calls (threads): calls that each start at a multiple of 12 rows and
 * have at least 12 rows give, within one build, the same bits as one call on all the rows.
 */
void tinylm_matmul_f32(const float *x, const float *w, const float *b, float *y,
                       size_t M, size_t N, size_t K);
/* tinylm_matmul_nn_f32: y (M, N) = x (M, K) @ w (K, N), both row-major, no bias: w as it is stored,
 * not transposed (a Linear layer's backward, dx = dy @ W with W (out, in), has this form). Same error
 * bound, IEEE semantics and row splitting as tinylm_matmul_f32. */
void tinylm_matmul_nn_f32(const float *x, const float *w, float *y, size_t M, size_t N, size_t K);
/* tinylm_matmul_tn_f32: y (M, N) = x (K, M).T @ w (K, N), both row-major and K-first, no bias (a Linear
 * layer's dW = dy^T @ x, with dy (tokens, out) and x (tokens, in)). x's rows are x_row >= M floats apart:
 * the M columns may be a block of a wider x (row m of y is column m of x), which is how the rows of y
 * are split between calls, with the same rule and the same bits as tinylm_matmul_f32. Same error bound
 * and IEEE semantics as tinylm_matmul_f32. */
void tinylm_matmul_tn_f32(const float *x, size_t x_row, const float *w, float *y, size_t M, size_t N, size_t K);

/* ---- fp16 matmul (matmul_f16.c) ---------------------------------------------------------------
 * Same as tinylm_matmul_f32 with x and w stored as binary16: every element is converted exactly to
 * fp32, products and sums are fp32, b is fp32 (or NULL), y is fp32. Same error bound.
 */
void tinylm_matmul_f16(const uint16_t *x, const uint16_t *w, const float *b, float *y,
                       size_t M, size_t N, size_t K);

/* ---- int8 matmul (matmul_s8.c) ----------------------------------------------------------------
 * y (M, N) int32 = x (M, K) @ w (N, K).T with int32 accumulation. Exact, provided every value is in
 * [-127, 127] and K <= 133144 (so |y| <= 127*127*K < 2^31 never overflows).
 */
void tinylm_matmul_s8(const int8_t *x, const int8_t *w, int32_t *y, size_t M, size_t N, size_t K);

/* ---- int8 on AMX tiles (matmul_s8.c, linear_s8.c) ------------------------------------------------
 * tinylm_matmul_s8_amx, tinylm_linear_s8_amx: the contracts (and the bits) of tinylm_matmul_s8 and
 * tinylm_linear_s8, computed with AMX-INT8 tiles for M >= 16 when the build has AMX (__AMX_TILE__,
 * __AMX_INT8__ with AVX-512 VNNI); in any other build they are those functions. The OS must have
 * granted the process the tile state first (Linux: arch_prctl ARCH_REQ_XCOMP_PERM), or the first tile
 * instruction faults: the kernels make no OS call, so the caller asks (tinylm.kernels does, once, and
 * calls these only when it was granted).
 */
void tinylm_matmul_s8_amx(const int8_t *x, const int8_t *w, int32_t *y, size_t M, size_t N, size_t K);
void tinylm_linear_s8_amx(const float *x, const int8_t *w_q, const float *w_scale, const float *b,
                          float *y, int8_t *x_q, float *x_scale,
                          size_t M, size_t N, size_t K, size_t group_size);

/* ---- int8 quantization (quant_s8.c) ---------------------------------------------------------
 * tinylm_quantize_s8: for each row m and group g of group_size columns (group_size divides K,
 *   G = K / group_size):
 *     amax = max |x| over the group;  scale[m*G + g] = amax / 127.0f          (fp32 division)
 *     q[m*K + k] = clamp(round_half_even(x / scale), -127, 127)              (fp32 division)
 *   Exact. Special groups, where scale is not a positive finite number, get q = 0 for the group:
 *     all zeros -> scale 0;  amax so small that amax/127 underflows to 0 -> scale 0;
 *     any NaN in the group -> scale NaN;  otherwise any +-inf -> scale +inf.
 *   (So dequantizing a group that held NaN/inf gives NaN: 0 * NaN, 0 * inf.)
 * tinylm_dequantize_s8: y[m*K + k] = (float)q[m*K + k] * scale[m*G + k / group_size]. Exact.
 */
void tinylm_quantize_s8(const float *x, int8_t *q, float *scale, size_t M, size_t K, size_t group_size);
void tinylm_dequantize_s8(const int8_t *q, const float *scale, float *y, size_t M, size_t K,
                          size_t group_size);

/* ---- int8 linear layer (linear_s8.c) -----------------------------------------------------------
 * The int8 path of a model's Linear layer. x (M, K) fp32 activations are first quantized with
 * tinylm_quantize_s8's exact rule into the caller's workspace x_q (M, K) int8 and x_scale (M, G)
 * fp32 (G = K / group_size); the kernel reads and writes nothing past those M * K bytes and M * G
 * floats. Weights: w_q (N, K) int8 in [-127, 127], w_scale (N, G) fp32. Then,
 * for every output, in this order (fp32, no fused multiply-add):
 *     acc = 0;  for g in 0..G-1:  acc = acc + (x_scale[m,g] * w_scale[n,g]) * (float)dot_g
 *     y[m, n] = acc + b[n]            (or acc when b is NULL)
 * where dot_g is the exact int32 dot product of the group (group_size <= 133144). Exact.
 */
void tinylm_linear_s8(const float *x, const int8_t *w_q, const float *w_scale, const float *b,
                      float *y, int8_t *x_q, float *x_scale,
                      size_t M, size_t N, size_t K, size_t group_size);

/* ---- int4 linear layer (linear_s4.c) -----------------------------------------------------------
 * int4 format (weights only; Q4_0's layout): symmetric, zero point 0, values in [-7, 7] (-8 is never
 * produced and is rejected by the Python boundary), one float32 scale per output row and group of
 * `group_size` consecutive columns (K and group_size multiples of 32): real value = q * scale.
 * Quantizing (done once, offline, by tinylm.kernels.quantize_s4; no C kernel):
 *     scale = amax / 7.0f   (fp32 division);  q = clamp(round_half_even(w / scale), -7, 7)
 *   with the special groups of tinylm_quantize_s8 (scale 0, NaN or inf -> q = 0 for the group).
 * Packing: row n is K / 2 bytes, in blocks of 16 bytes for 32 columns (as llama.cpp's Q4_0): byte j
 * of block c holds column 32c + j in its LOW nibble and column 32c + j + 16 in its HIGH nibble, each
 * as 4-bit two's complement (q & 0xF): -7 = 0x9, -1 = 0xF, 7 = 0x7.
 *     w_q4[n * K/2 + 16c + j] = (uint8_t)((q[n, 32c + j] & 0xF) | (q[n, 32c + j + 16] & 0xF) << 4)
 * tinylm_dequantize_s4: y[n*K + k] = (float)q[n, k] * w_scale[n*G + k / group_size]. Exact.
 * tinylm_linear_s4: exactly tinylm_linear_s8's rule with w_q4 in place of w_q: x (M, K) fp32 is
 *   quantized with tinylm_quantize_s8 into the caller's workspace x_q (M, K) int8 and x_scale (M, G)
 *   fp32; then for every output, in this order (fp32, no fused multiply-add):
 *     acc = 0;  for g in 0..G-1:  acc = acc + (x_scale[m,g] * w_scale[n,g]) * (float)dot_g
 *     y[m, n] = acc + b[n]            (or acc when b is NULL)
 *   where dot_g = sum over the group of x_q * q, exact in int32 (|dot_g| <= 127 * 7 * group_size;
 *   group_size <= 133144 as for int8, a multiple of 32). Exact.
 */
void tinylm_dequantize_s4(const uint8_t *w_q4, const float *w_scale, float *y, size_t N, size_t K,
                          size_t group_size);
void tinylm_linear_s4(const float *x, const uint8_t *w_q4, const float *w_scale, const float *b,
                      float *y, int8_t *x_q, float *x_scale,
                      size_t M, size_t N, size_t K, size_t group_size);

/* ---- softmax (softmax.c) ----------------------------------------------------------------------
 * tinylm_exp_f32: y[i] = tinylm's exp(x[i]) approximation, used by the float softmaxes:
 *   Cody-Waite reduction x = n*ln2 + r, |r| <= ln2/2, a fitted degree-6 polynomial for e^r (softmax.c
 *   gives its coefficients), times 2^n. Max relative error 1.5e-7 (measured 9.9e-8, under 1 ulp, over
 *   every float in [-87.33, 88.72]; a test checks a dense sweep); x < -87.33 -> 0 (no subnormal
 *   results), x > 88.72 -> +inf, -inf -> 0, +inf -> +inf, NaN -> NaN.
 * tinylm_softmax_f32: each of the `rows` rows of `cols` values:
 *     y = e / sum(e),  e = exp(x - max(x))   (max subtracted, so exp never overflows)
 *   causal_tq = 0: no mask. causal_tq = Tq > 0: the rows form matrices of Tq query rows, and row i of
 *   each matrix only sees columns j <= i + (cols - Tq) (cols >= Tq); masked entries are exactly 0.
 *   Not exact (own exp, summation order): within 1e-6 + 2e-6 * y of the exact softmax for rows up to
 *   a few thousand values. A row holding a NaN or +inf, or whose visible values are all -inf, is NaN
 *   (the formula's 0/0 or inf - inf); -inf entries elsewhere get probability 0.
 * tinylm_softmax_f16: the same (no mask) on binary16 storage: converted exactly to fp32, fp32 math,
 *   output rounded to nearest even binary16. Within 1 fp16 ulp of the exactly rounded result.
 * tinylm_softmax_s8: integer-only softmax for targets without an FPU. Logits x int8 with real value
 *   x * scale. exp_table[d] = round(exp(-d * scale) * 2^30) for d = 0..255 (built by the caller:
 *   tinylm.kernels.reference.softmax_s8_table; the table is what carries `scale`). For each row:
 *     m = max x;  e_i = exp_table[m - x_i];  S = sum e_i (uint64);
 *     y_i = min(255, floor((e_i * 256 + floor(S / 2)) / S))     (uint64 integer math)
 *   Output: uint8 in Q0.8, probability p_i ~ y_i / 256 (1.0 saturates to 255). Exact (integer
 *   only). Within 1/256 (+ 2^-22) of the float softmax of x * scale.
 */
void tinylm_exp_f32(const float *x, float *y, size_t n);
void tinylm_softmax_f32(const float *x, float *y, size_t rows, size_t cols, size_t causal_tq);
void tinylm_softmax_f16(const uint16_t *x, uint16_t *y, size_t rows, size_t cols);
void tinylm_softmax_s8(const int8_t *x, uint8_t *y, size_t rows, size_t cols,
                       const uint32_t *exp_table);

/* ---- build information (build_info.c) --------------------------------------------------------
 * A constant string naming the SIMD paths compiled into this build, e.g. "avx2 fma f16c" or
 * "portable". (A string literal: no mutable state.)
 */
const char *tinylm_build_info(void);

/* ==== kernels of the C runtime (runtime/tinylm_runtime.c): one block each ==================== */

/* ---- layer norm (layernorm.c) ------------------------------------------------------------------
 * y (rows, C) = LayerNorm of each row of x (rows, C), fp32 throughout, in this order:
 *     mean = (sum x) / C;   var = (sum (x - mean)^2) / C   (each sum in 8 interleaved partial
 *     sums, i = j mod 8, added pairwise, then the C % 8 tail left to right)
 *     rstd = 1 / sqrt(var + eps)   (sqrt correctly rounded but for rare double-rounding cases; no libm)
 *     y = ((x - mean) * rstd) * w + b        (b may be NULL: no bias)
 * Not exact (NumPy sums pairwise): within 1e-5 * (1 + |y|) of tinylm.autograd.layer_norm for rows up
 * to a few thousand values. var + eps = 0 -> rstd = inf; a NaN in a row gives NaN in the row.
 */
void tinylm_layernorm_f32(const float *x, const float *w, const float *b, float *y,
                          size_t rows, size_t C, float eps);

/* ---- GELU (gelu.c) ---------------------------------------------------------------------------
 * y[i] = GELU(x[i]), the tanh form GPT-2 uses, computed as tinylm.autograd.gelu does, in fp32:
 *     t = ((x*x) * K1 - K2) * x   (= -2u, u = sqrt(2/pi) (x + 0.044715 x^3));  K1 = (float)(-2
 *     sqrt(2/pi) 0.044715), K2 = (float)(2 sqrt(2/pi));   y = x * (1 / (tinylm_exp_f32(t) + 1))
 * Not exact (own exp, within 1.5e-7 relative): |y - y_ref| <= 1e-6 * |y| + 1e-37 against the NumPy
 * reference. Very negative x: exp overflows to +inf and y = -0 (as GELU tends to 0).
 */
void tinylm_gelu_f32(const float *x, float *y, size_t n);

/* ---- embedding lookups and the residual add (embedding.c) -----------------------------------
 * out (n, C) fp32 = rows ids[0..n-1] of a (V, C) table. Exact. The caller checks 0 <= ids[i] < V.
 *   tinylm_embedding_f32: copied.  tinylm_embedding_f16: converted exactly (tinylm_f16_to_f32).
 *   tinylm_embedding_s8: q (V, C) int8 with scale (V, C / group_size): out = q * scale, exactly as
 *   tinylm_dequantize_s8 (group_size divides C).
 * tinylm_residual_add_f32: x[i] = x[i] + r[i] in place (the residual stream). Exact.
 */
void tinylm_embedding_f32(const float *table, const int32_t *ids, float *out, size_t n, size_t C);
void tinylm_embedding_f16(const uint16_t *table, const int32_t *ids, float *out, size_t n, size_t C);
void tinylm_embedding_s8(const int8_t *q, const float *scale, const int32_t *ids, float *out,
                         size_t n, size_t C, size_t group_size);
void tinylm_residual_add_f32(float *x, const float *r, size_t n);

/* ---- attention over a KV cache (attention.c) -------------------------------------------------
 * One query token against T cached positions, n_head heads of head_size (C = n_head * head_size):
 * q (C,); k, v (T, stride) rows (stride >= C; head h is columns h*head_size ..); y (C,).
 * For each head h, fp32, in this order:
 *     s[t] = (sum_i q[h,i] * k[t,h,i]) * scale       (scale = 1/sqrt(head_size), rounded to float;
 *            the sum in 8 interleaved partial sums, i = j mod 8, added pairwise, then the tail)
 *     p = tinylm_softmax_f32(s)  (one row of T);     y[h,i] = sum_t p[t] * v[t,h,i]   (t ascending)
 * scratch: 2*T floats of the caller's. T >= 1. Not exact (own softmax, summation order): within
 * 1e-5 * (1 + max|v|) of the float64 result for T up to a few thousand.
 */
void tinylm_attention_f32(const float *q, const float *k, const float *v, float *y, float *scratch,
                          size_t n_head, size_t head_size, size_t T, size_t stride, float scale);

/* ==== training's kernels: the backward passes, cross-entropy, AdamW (one block) ================
 * What tinylm.autograd calls when the C backend is present (tinylm/autograd/functional.py,
 * tinylm/optim.py). Each backward sits in the file of its forward. None is exact against its NumPy
 * reference (own exp / log / square root, summation order) except where a line says "Exact"; the
 * bounds are the ones tests/test_kernels_train.py checks. A backward recomputes what it needs from
 * the forward's input (mean and rstd of a row, sigmoid of GELU) rather than taking it from a buffer.
 *
 * tinylm_gelu_backward_f32 (gelu.c): dx[i] = dy[i] * GELU'(x[i]), in fp32 in this order, with
 *     s = 1 / (tinylm_exp_f32(t) + 1) (t as in tinylm_gelu_f32: s = sigmoid(2u)) and K3 = (float)(6
 *     sqrt(2/pi) 0.044715):   d = ((((x*x) * K3 + K2) * x) * (1 - s) + 1) * s;   dx = d * dy
 *   Within 2e-6 * (|dx| + |dy|) + 1e-30 of the reference (which uses NumPy's exp).
 * tinylm_layernorm_backward_f32 (layernorm.c): for x, w, dy (rows, C), with mean, rstd of each row
 *   computed exactly as tinylm_layernorm_f32 does, xhat = (x - mean) * rstd, dxhat = dy * w:
 *     dx = ((dxhat - a) - xhat * b) * rstd,   a = (sum dxhat) / C,  b = (sum dxhat * xhat) / C
 *     dw[c] = sum over rows of dy * xhat;  db[c] = sum over rows of dy (rows in order; db may be NULL)
 *   (sums over a row in 8 interleaved partial sums as in tinylm_layernorm_f32). Within
 *   1e-5 * (1 + |v|) of the reference for each output v, for rows of a few thousand values.
 * tinylm_rmsnorm_f32 (layernorm.c): y = (x * rstd) * w,  rstd = 1 / sqrt((sum x^2) / C + eps)
 *   (Llama's norm; same sums and square root as tinylm_layernorm_f32). Within 1e-5 * (1 + |y|).
 * tinylm_rmsnorm_backward_f32 (layernorm.c): xhat = x * rstd, dxhat = dy * w,
 *     dx = (dxhat - xhat * b) * rstd,  b = (sum dxhat * xhat) / C;   dw[c] = sum over rows of dy * xhat
 *   Within 1e-5 * (1 + |v|).
 * tinylm_softmax_backward_f32 (softmax.c): y = softmax output (rows, cols), dy its gradient:
 *     dx = ((dy - s) * y) * scale,   s = sum over the visible columns of dy * y   (8 partial sums)
 *   causal_tq as in tinylm_softmax_f32: masked entries (y = 0) get dx = 0 and are not read.
 *   scale folds in the factor of a scaled softmax (attention's 1/sqrt(hs)); 1 for a plain softmax.
 *   Within 1e-6 * (|dx| + scale * max|dy * y| * cols) of the reference.
 * tinylm_cross_entropy_f32 (cross_entropy.c): logits z (N, V), targets (N,) int32 in [0, V) or < 0
 *   (ignored). Per row: max; e = tinylm_exp_f32(z - max); sum of e (8 partial sums);
 *     probs = e / sum   (the softmax, kept for the backward)
 *     nll = log(sum) - (z[target] - max)   (log: tinylm's own, in double, rounded to float);  0 when ignored
 *   Within 2e-6 * (1 + nll) for nll, 1e-6 + 2e-6 * p for probs, against the reference.
 * tinylm_cross_entropy_backward_f32: dz = (probs - onehot(target)) * scale per row, 0 for ignored rows
 *   (scale = dloss / n_valid). Exact (given the same probs).
 * tinylm_adamw_f32 (adamw.c): one AdamW step over n values, in place, in this order (fp32, no FMA):
 *     p = p * decay;   m = m * beta1 + g * (1 - beta1)    [the float one_minus_beta1 is passed]
 *     v = v * beta2 + (g * g) * one_minus_beta2;   p = p + (m / (sqrt(v) + eps_hat)) * step
 *   with decay = 1 - lr wd, eps_hat = eps sqrt(1 - beta2^t), step = -lr sqrt(1 - beta2^t) / (1 - beta1^t)
 *   computed by the caller (tinylm.optim.AdamW) and rounded to float. Exact (sqrt correctly rounded:
 *   the SIMD instruction, or the portable Newton square root of layernorm.c but for rare double-
 *   rounding cases).
 * tinylm_embedding_backward_f32 (embedding.c): dtable (V, C) = 0, then dtable[ids[i]] += dy[i] (C
 *   values) for i = 0 .. n-1 in order: the scatter-add. The caller checks 0 <= ids[i] < V. Exact.
 */
void tinylm_gelu_backward_f32(const float *x, const float *dy, float *dx, size_t n);
void tinylm_layernorm_backward_f32(const float *x, const float *w, const float *dy, float *dx, float *dw,
                                   float *db, size_t rows, size_t C, float eps);
void tinylm_rmsnorm_f32(const float *x, const float *w, float *y, size_t rows, size_t C, float eps);
void tinylm_rmsnorm_backward_f32(const float *x, const float *w, const float *dy, float *dx, float *dw,
                                 size_t rows, size_t C, float eps);
void tinylm_softmax_backward_f32(const float *y, const float *dy, float *dx, size_t rows, size_t cols,
                                 size_t causal_tq, float scale);
void tinylm_cross_entropy_f32(const float *logits, const int32_t *targets, float *probs, float *nll,
                              size_t N, size_t V);
void tinylm_cross_entropy_backward_f32(const float *probs, const int32_t *targets, float *dlogits,
                                       size_t N, size_t V, float scale);
void tinylm_adamw_f32(float *p, const float *g, float *m, float *v, size_t n, float decay, float beta1,
                      float one_minus_beta1, float beta2, float one_minus_beta2, float eps_hat, float step);
void tinylm_embedding_backward_f32(const int32_t *ids, const float *dy, float *dtable, size_t n, size_t V,
                                   size_t C);

/* ---- fused attention for training (sdpa.c) ----------------------------------------------------------
 * Scaled dot-product attention over B * n_head heads, its forward and its backward, fp32: what
 * tinylm.autograd's scaled_dot_product_attention runs for float32 tensors.
 * Operands are (B, n_head, T, hs) tensors seen through strides, so that q, k, v can be read straight out
 * of the (B, T, 3C) output of the qkv linear layer and dq, dk, dv written straight into its gradient:
 * element (b, h, t, i) of an operand with strides s is at [b * s.batch + h * s.head + t * s.row + i]
 * (the hs values of a position are contiguous). q, y, dy, dq have T = Tq; k, v, dk, dv have T = Tk.
 * p (B * n_head, Tq, Tk) is contiguous: the probabilities, saved by the forward for the backward.
 * Masking: causal = 1 makes the queries the LAST Tq of Tk positions (Tq <= Tk): query i sees keys
 * j <= i + (Tk - Tq); causal = 0 lets every query see every key. Per head, fp32:
 *     S = (q k^T) * scale    (only the visible entries are computed)
 *     P = tinylm_softmax_f32(S) row by row, causal_tq = Tq when causal;  masked P are exactly 0
 *     y = P v
 * tinylm_sdpa_f32: writes y and p. scratch: (Tq + hs) * Tk floats of the caller's.
 * tinylm_sdpa_backward_f32: from q, k, v, the forward's p and dy (the gradient of y):
 *     dv = P^T dy;  dP = dy v^T;  dS = tinylm_softmax_backward_f32(P, dP) * scale;  dq = dS k;  dk = dS^T q
 *   writes every element of dq, dk, dv (each is written, not accumulated: they may be three disjoint
 *   parts of one buffer, but overlap no input). scratch: (2 * Tq + hs) * Tk floats of the caller's.
 * Tq, Tk, hs >= 1. Not exact (own exp, summation order; the SIMD path fuses multiply-adds): each output
 * o (y, p, dq, dk, dv) is within 1e-5 * (1 + max|o_ref|) of the reference (max over the head), for
 * inputs of size ~1, hs <= 256 and Tk up to a few thousand. A NaN or inf in an input row spreads NaN
 * as in the matrix products of the reference (0 * inf, masked probabilities included).
 */
typedef struct tinylm_strides {
    size_t batch, head, row;   /* elements between consecutive batches, heads, positions */
} tinylm_strides;
void tinylm_sdpa_f32(const float *q, tinylm_strides qs, const float *k, tinylm_strides ks,
                     const float *v, tinylm_strides vs, float *y, tinylm_strides ys, float *p, float *scratch,
                     size_t B, size_t n_head, size_t Tq, size_t Tk, size_t hs, int causal, float scale);
void tinylm_sdpa_backward_f32(const float *q, tinylm_strides qs, const float *k, tinylm_strides ks,
                              const float *v, tinylm_strides vs, const float *p,
                              const float *dy, tinylm_strides dys, float *dq, tinylm_strides dqs,
                              float *dk, tinylm_strides dks, float *dv, tinylm_strides dvs, float *scratch,
                              size_t B, size_t n_head, size_t Tq, size_t Tk, size_t hs, int causal, float scale);

/* cffi-end */

#endif /* TINYLM_KERNELS_H */
