/* tinylm_runtime.c -- a tinylm GPT in one C99 file: blob check, arena, forward pass, BPE, sampling.
 *
 * Read it top to bottom: small helpers; the blob validator (every number of the file is checked
 * before it is used); the arena layout; the forward pass (GPT-2 with a KV cache, per-layer
 * precision, mixture-of-experts blocks); the tokenizer (pre-split + byte-level BPE); the sampler and
 * its PRNG; the generation loop. The format and the API are in tinylm_runtime.h. The hot loops are
 * tinylm's kernels (the .c files of kernels/, contracts in kernels/tinylm_kernels.h): this file only calls them.
 *
 * No malloc, no globals, no I/O, no libm. The Python it mirrors: tinylm/model.py (forward),
 * tinylm/moe.py (routing), tinylm/tokenizer.py (encode), tinylm/generate.py (sampling, generate).
 */
#include "tinylm_runtime.h"

#include <string.h>

#include "tinylm_kernels.h"

/* ============================================================================================
 * small helpers
 */

static uint32_t rd32(const uint8_t *p)      /* a little-endian u32 (the host is checked to be LE) */
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static int host_is_little_endian(void)
{
    const uint32_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Error messages without stdio: "text" or "text (got N)". Always NUL-terminated. */
static void put_str(char *msg, size_t size, size_t *at, const char *s)
{
    while (*s && *at + 1 < size)
        msg[(*at)++] = *s++;
    if (size)
        msg[*at < size ? *at : size - 1] = '\0';
}

static int fail(char *msg, size_t size, int status, const char *text)
{
    size_t at = 0;
    if (msg && size)
        put_str(msg, size, &at, text);
    return status;
}

static int failv(char *msg, size_t size, int status, const char *text, uint64_t value)
{
    char digits[24];
    size_t n = 0, at = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    char num[24];
    for (size_t i = 0; i < n; i++)
        num[i] = digits[n - 1 - i];
    num[n] = '\0';
    if (msg && size) {
        put_str(msg, size, &at, text);
        put_str(msg, size, &at, " (got ");
        put_str(msg, size, &at, num);
        put_str(msg, size, &at, ")");
    }
    return status;
}

/* sqrt of a positive finite double by Newton's method (no libm); see kernels/layernorm.c. */
static double sqrt_newton(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    bits = 0x1FF7A3BEA91D9B1Bull + (bits >> 1);
    double g;
    memcpy(&g, &bits, sizeof g);
    for (int i = 0; i < 5; i++)
        g = 0.5 * (g + d / g);
    return g;
}

/* exp(x) in double for x <= 0 (the sampler's softmax): x = n ln2 + r, |r| <= ln2/2, a degree-13
 * Taylor polynomial for e^r (error < 1e-17 relative), times 2^n built from its bits. Below -745: 0. */
static double exp_neg(double x)
{
    if (!(x > -745.0))
        return x != x ? x : 0.0;                     /* NaN stays NaN; very negative -> 0 */
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const int n = (int)(x * 1.44269504088896338700 - 0.5);   /* round(x / ln2): truncating a
                                                                negative value rounds it up */
    const double r = (x - n * ln2_hi) - n * ln2_lo;
    double p = 1.0 / 6227020800.0;                   /* 1/13! */
    static const double inv_fact[13] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                        1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
                                        1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    for (int i = 0; i < 13; i++)
        p = p * r + inv_fact[i];
    /* 2^n for n in [-1075, 0]: in two halves so each factor is a normal double */
    const int n1 = n / 2, n2 = n - n1;
    const uint64_t b1 = (uint64_t)(1023 + n1) << 52, b2 = (uint64_t)(1023 + n2) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

/* ============================================================================================
 * the model in the arena
 */

typedef struct {              /* one weight matrix (rows, cols) as the blob holds it */
    uint32_t dtype, rows, cols, group_size;
    const void *data;         /* float / uint16_t (binary16) / int8_t, rows * cols; int4: uint8_t, rows * cols / 2 */
    const float *scale;       /* int8, int4: (rows, cols / group_size) */
} rt_matrix;

typedef struct {              /* an MLP: c_fc (4C, C), GELU, c_proj (C, 4C) */
    rt_matrix fc, proj;
    const float *fc_b, *proj_b;                      /* NULL without biases */
} rt_mlp;

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;      /* (C,) */
    rt_matrix attn, attn_proj;                       /* (3C, C), (C, C) */
    const float *attn_b, *attn_proj_b;               /* (3C,), (C,) */
    rt_matrix router;                                /* (n_expert, C) when n_expert > 0 */
    rt_mlp *mlp;                                     /* 1 MLP, or n_expert experts */
} rt_layer;

struct tinylm_model {
    tinylm_config cfg;
    rt_matrix wte, wpe;                              /* (vocab_size, C), (block_size, C) */
    const float *lnf_w, *lnf_b;
    rt_layer *layers;                                /* (n_layer,) */
    float attn_scale;                                /* 1 / sqrt(head_size), rounded to float */
    /* KV cache: (n_layer, block_size, C) each; row t of layer l holds position t's key / value */
    float *key_cache, *value_cache;
    /* activations of one token */
    float *x, *xb, *xb2;                             /* (C,) the residual stream, two work rows */
    float *qkv;                                      /* (3C,) */
    float *hb, *hb2;                                 /* (4C,) the MLP's hidden row, after GELU */
    float *moe_out, *moe_y;                          /* (C,) */
    float *router_logits;                            /* (n_expert,) */
    float *moe_gates;                                /* (2 n_expert,) chosen logits, then gates */
    uint32_t *moe_chosen;                            /* (n_expert,) */
    uint8_t *moe_taken;                              /* (n_expert,) */
    float *att;                                      /* (2 block_size,) attention scratch */
    float *logits;                                   /* (vocab_size,) */
    /* scratch of the linear layers: the activation row converted to fp16, or quantized to int8 */
    uint16_t *xh;                                    /* (4C,) */
    int8_t *xq;                                      /* (4C,) */
    float *xs;                                       /* (4C,) int8 scales (group_size >= 1) */
    /* sampler scratch */
    double *probs;                                   /* (vocab_size,) */
    uint32_t *order, *order_tmp;                     /* (vocab_size,) */
    /* tokenizer tables, in the blob: the encoder's, and each token's bytes */
    tinylm_bpe bpe;
    const uint32_t *token_start;
    const uint8_t *pool;
};

/* ============================================================================================
 * validation: nothing in the blob is used before it is checked here
 */

#define HEADER_BYTES 128u
#define TOK_HEADER_BYTES 32u
#define ENTRY_U32 12u
#define MAX_VOCAB (1u << 24)
#define MAX_BLOCK (1u << 20)
#define MAX_LAYER 1024u
#define MAX_EMBD (1u << 16)
#define MAX_EXPERT 256u
#define MAX_CP 0x10FFFFu

/* Is [off, off + n) inside a blob of `size` bytes? (64-bit sums: nothing wraps) */
static int in_blob(uint64_t off, uint64_t n, size_t size)
{
    return off <= (uint64_t)size && n <= (uint64_t)size - off;
}

static int check_config(const uint8_t *h, tinylm_config *c, char *msg, size_t ms)
{
    c->vocab_size = rd32(h + 16);
    c->block_size = rd32(h + 20);
    c->n_layer = rd32(h + 24);
    c->n_head = rd32(h + 28);
    c->n_embd = rd32(h + 32);
    c->n_expert = rd32(h + 36);
    c->expert_top_k = rd32(h + 40);
    const uint32_t flags = rd32(h + 44);
    memcpy(&c->ln_eps, h + 48, 4);
    c->bias = flags & 1u;
    if (flags > 1u)
        return failv(msg, ms, TINYLM_E_CONFIG, "config: unknown flag bits", flags);
    if (c->vocab_size < 256u || c->vocab_size > MAX_VOCAB)
        return failv(msg, ms, TINYLM_E_CONFIG, "config: vocab_size must be in 256 .. 2^24", c->vocab_size);
    if (c->block_size < 1u || c->block_size > MAX_BLOCK)
        return failv(msg, ms, TINYLM_E_CONFIG, "config: block_size must be in 1 .. 2^20", c->block_size);
    if (c->n_layer < 1u || c->n_layer > MAX_LAYER)
        return failv(msg, ms, TINYLM_E_CONFIG, "config: n_layer must be in 1 .. 1024", c->n_layer);
    if (c->n_embd < 1u || c->n_embd > MAX_EMBD)
        return failv(msg, ms, TINYLM_E_CONFIG, "config: n_embd must be in 1 .. 65536", c->n_embd);
    if (c->n_head < 1u || c->n_embd % c->n_head)
        return failv(msg, ms, TINYLM_E_CONFIG, "config: n_head must divide n_embd", c->n_head);
    if (c->n_expert > MAX_EXPERT)
        return failv(msg, ms, TINYLM_E_CONFIG, "config: n_expert must be at most 256", c->n_expert);
    if (c->n_expert && (c->expert_top_k < 1u || c->expert_top_k > c->n_expert))
        return failv(msg, ms, TINYLM_E_CONFIG, "config: expert_top_k must be in 1 .. n_expert", c->expert_top_k);
    if (!(c->ln_eps >= 0.0f && c->ln_eps < 1.0f))
        return fail(msg, ms, TINYLM_E_CONFIG, "config: ln_eps must be a number in [0, 1)");
    return TINYLM_OK;
}

static int check_tokenizer(const uint8_t *blob, size_t size, uint32_t off, uint32_t bytes,
                           tinylm_config *c, char *msg, size_t ms)
{
    if (off % TINYLM_BLOB_ALIGN)
        return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: offset is not a multiple of 16", off);
    if (bytes < TOK_HEADER_BYTES + 256u * 4u || !in_blob(off, bytes, size))
        return failv(msg, ms, TINYLM_E_TRUNCATED, "tokenizer: section runs past the end of the blob", off);
    const uint8_t *t = blob + off;
    const uint32_t n_tokens = rd32(t), n_merges = rd32(t + 4), pattern = rd32(t + 8);
    const uint32_t n_ranges = rd32(t + 12), pool_bytes = rd32(t + 16);
    if (rd32(t + 20) | rd32(t + 24) | rd32(t + 28))
        return fail(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: reserved header words are not zero");
    if (n_tokens < 256u || n_tokens > c->vocab_size)
        return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: n_tokens must be in 256 .. vocab_size", n_tokens);
    if (n_merges > n_tokens)
        return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: more merges than tokens", n_merges);
    if (pattern > 2u)
        return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: unknown pre-split pattern", pattern);
    if (n_ranges > MAX_CP + 1u)
        return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: too many Unicode ranges", n_ranges);
    const uint64_t words = 256ull + n_tokens + 1ull + 4ull * n_merges + 2ull * n_ranges;
    if ((uint64_t)TOK_HEADER_BYTES + 4ull * words + pool_bytes != bytes)
        return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: section size does not match its counts", bytes);
    const uint32_t *byte_ids = (const uint32_t *)(const void *)(t + TOK_HEADER_BYTES);
    const uint32_t *start = byte_ids + 256;
    const uint32_t *merges = start + n_tokens + 1;
    const uint32_t *pair_index = merges + 3ull * n_merges;
    const uint32_t *ranges = pair_index + n_merges;
    /* token byte strings: start[] non-decreasing from 0 to pool_bytes */
    if (start[0] != 0 || start[n_tokens] != pool_bytes)
        return fail(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: token offsets do not span the byte pool");
    for (uint32_t i = 0; i < n_tokens; i++)
        if (start[i + 1] < start[i])
            return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: token offsets decrease at id", i);
    const uint8_t *pool = (const uint8_t *)(ranges + 2ull * n_ranges);
    /* byte b is the one-byte token byte_ids[b] (so the 256 ids are distinct) */
    for (uint32_t b = 0; b < 256u; b++) {
        const uint32_t id = byte_ids[b];
        if (id >= n_tokens || start[id + 1] - start[id] != 1u || pool[start[id]] != b)
            return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: byte_ids does not map this byte to its one-byte token", b);
    }
    /* merge r: (left, right) -> new_id, whose bytes are left's then right's */
    for (uint32_t r = 0; r < n_merges; r++) {
        const uint32_t a = merges[3u * r], b = merges[3u * r + 1], id = merges[3u * r + 2];
        if (a >= n_tokens || b >= n_tokens || id >= n_tokens)
            return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: a merge uses an id past n_tokens, at rank", r);
        const uint32_t la = start[a + 1] - start[a], lb = start[b + 1] - start[b];
        if (la == 0 || lb == 0 || (uint64_t)start[id + 1] - start[id] != (uint64_t)la + lb ||
            memcmp(pool + start[id], pool + start[a], la) || memcmp(pool + start[id] + la, pool + start[b], lb))
            return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: a merged token's bytes are not its pair's, at rank", r);
    }
    /* pair_index: ranks sorted by (left, right), strictly increasing (a permutation of the ranks) */
    for (uint32_t i = 0; i < n_merges; i++) {
        const uint32_t r = pair_index[i];
        if (r >= n_merges)
            return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: pair_index holds a rank past n_merges", r);
        if (i) {
            const uint32_t q = pair_index[i - 1];
            const uint64_t prev = (uint64_t)merges[3u * q] << 32 | merges[3u * q + 1];
            const uint64_t cur = (uint64_t)merges[3u * r] << 32 | merges[3u * r + 1];
            if (cur <= prev)
                return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: pair_index is not strictly increasing at", i);
        }
    }
    /* Unicode classes: sorted, disjoint ranges of valid code points, class bits in 1..7 */
    for (uint32_t i = 0; i < n_ranges; i++) {
        const uint32_t lo = ranges[2u * i], hi = ranges[2u * i + 1] & 0xFFFFFFu, cls = ranges[2u * i + 1] >> 24;
        if (lo > hi || hi > MAX_CP || cls < 1u || cls > 7u || (i && lo <= (ranges[2u * i - 1] & 0xFFFFFFu)))
            return failv(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: Unicode class ranges are not sorted and disjoint at", i);
    }
    if (pattern && n_ranges == 0)
        return fail(msg, ms, TINYLM_E_TOKENIZER, "tokenizer: a pre-split pattern needs the Unicode class table");
    c->n_tokens = n_tokens;
    c->pattern = pattern;
    return TINYLM_OK;
}

/* What the config expects of tensor (kind, layer, expert): 1 with its shape and whether it may be
 * fp16 / int8 (a weight matrix), or 0 when the config has no such tensor. */
static int expected_tensor(const tinylm_config *c, uint32_t kind, uint32_t layer, uint32_t expert,
                           uint32_t *rows, uint32_t *cols, int *matrix)
{
    const uint32_t C = c->n_embd, n_mlp = c->n_expert ? c->n_expert : 1u;
    const int global = kind <= TINYLM_T_LNF_B, bias_kind = kind == TINYLM_T_LNF_B || kind == TINYLM_T_LN1_B ||
        kind == TINYLM_T_ATTN_B || kind == TINYLM_T_ATTN_PROJ_B || kind == TINYLM_T_LN2_B ||
        kind == TINYLM_T_FC_B || kind == TINYLM_T_MLP_PROJ_B;
    const int per_expert = kind >= TINYLM_T_FC_W && kind <= TINYLM_T_MLP_PROJ_B;
    if (kind < TINYLM_T_WTE || kind > TINYLM_T_ROUTER_W || (bias_kind && !c->bias))
        return 0;
    if (global ? layer != 0 : layer >= c->n_layer)
        return 0;
    if (per_expert ? expert >= n_mlp : expert != 0)
        return 0;
    if (kind == TINYLM_T_ROUTER_W && !c->n_expert)
        return 0;
    *rows = 1;
    *matrix = 1;
    switch (kind) {
    case TINYLM_T_WTE: *rows = c->vocab_size; *cols = C; return 1;
    case TINYLM_T_WPE: *rows = c->block_size; *cols = C; return 1;
    case TINYLM_T_ATTN_W: *rows = 3 * C; *cols = C; return 1;
    case TINYLM_T_ATTN_PROJ_W: *rows = C; *cols = C; return 1;
    case TINYLM_T_FC_W: *rows = 4 * C; *cols = C; return 1;
    case TINYLM_T_MLP_PROJ_W: *rows = C; *cols = 4 * C; return 1;
    case TINYLM_T_ROUTER_W: *rows = c->n_expert; *cols = C; return 1;
    default: break;
    }
    *matrix = 0;
    *cols = kind == TINYLM_T_ATTN_B ? 3 * C : kind == TINYLM_T_FC_B ? 4 * C : C;
    return 1;
}

static uint64_t expected_tensor_count(const tinylm_config *c)
{
    const uint64_t b = c->bias, n_mlp = c->n_expert ? c->n_expert : 1u;
    return 3 + b + (uint64_t)c->n_layer * (4 + 4 * b + n_mlp * (2 + 2 * b) + (c->n_expert ? 1 : 0));
}

/* Check one table entry (its offsets, sizes, tag, shape) and, when `place` is given, store it. */
static int check_entry(const uint8_t *blob, size_t size, const tinylm_config *c, const uint8_t *e,
                       rt_matrix *place, char *msg, size_t ms)
/* (place == NULL: validate, scanning int8 data for -128 and int4 data for the nibble -8; else: store an
 * entry validated before) */
{
    const uint32_t kind = rd32(e), layer = rd32(e + 4), expert = rd32(e + 8), dtype = rd32(e + 12);
    const uint32_t gs = rd32(e + 16), rows = rd32(e + 20), cols = rd32(e + 24);
    const uint32_t off = rd32(e + 28), nbytes = rd32(e + 32), soff = rd32(e + 36), sbytes = rd32(e + 40);
    uint32_t want_rows, want_cols;
    int matrix;
    if (rd32(e + 44) || !expected_tensor(c, kind, layer, expert, &want_rows, &want_cols, &matrix))
        return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: an entry names no tensor of this config, kind", kind);
    if (rows != want_rows || cols != want_cols)
        return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: a tensor's shape does not match the config, kind", kind);
    const uint32_t max_dtype = rd32(blob + 4) >= 2 ? TINYLM_DTYPE_S4 : TINYLM_DTYPE_S8;  /* int4: version 2 */
    if (dtype > max_dtype || (!matrix && dtype != TINYLM_DTYPE_F32))
        return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: bad precision tag (vectors are fp32; int4 needs version 2), kind", kind);
    if (dtype == TINYLM_DTYPE_S4 && cols % 32)
        return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: an int4 tensor's cols must be a multiple of 32, kind", kind);
    /* bytes per 2 values: fp32 8, fp16 4, int8 2, int4 1 (cols is even for int4) */
    const uint64_t per_two = dtype == TINYLM_DTYPE_F32 ? 8 : dtype == TINYLM_DTYPE_F16 ? 4 : dtype == TINYLM_DTYPE_S8 ? 2 : 1;
    if ((uint64_t)rows * cols * per_two != 2u * (uint64_t)nbytes)
        return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: data_bytes is not rows * cols * element size (int4: rows * cols / 2), kind", kind);
    if (off % TINYLM_BLOB_ALIGN || !in_blob(off, nbytes, size))
        return failv(msg, ms, TINYLM_E_TRUNCATED, "tensor table: data is misaligned or runs past the end of the blob, kind", kind);
    if (dtype == TINYLM_DTYPE_S8 || dtype == TINYLM_DTYPE_S4) {
        if (gs < 1 || cols % gs)
            return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: int8/int4 group_size must divide cols", gs);
        if (dtype == TINYLM_DTYPE_S4 && gs % 32)
            return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: int4 group_size must be a multiple of 32", gs);
        if (gs > 133144u)       /* the kernels' limit: a group's int32 dot product cannot overflow */
            return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: int8/int4 group_size above 133144", gs);
        if ((uint64_t)rows * (cols / gs) * 4u != sbytes)
            return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: scale_bytes is not rows * groups * 4, kind", kind);
        if (soff % TINYLM_BLOB_ALIGN || !in_blob(soff, sbytes, size))
            return failv(msg, ms, TINYLM_E_TRUNCATED, "tensor table: scales are misaligned or run past the end of the blob, kind", kind);
        const int8_t *q = (const int8_t *)(const void *)(blob + off);
        const uint8_t *q4 = blob + off;
        for (uint64_t i = 0; !place && dtype == TINYLM_DTYPE_S8 && i < nbytes; i++)
            if (q[i] == -128)
                return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: int8 weights hold -128 (expected [-127, 127]), kind", kind);
        for (uint64_t i = 0; !place && dtype == TINYLM_DTYPE_S4 && i < nbytes; i++)
            if ((q4[i] & 0xFu) == 0x8u || (q4[i] >> 4) == 0x8u)
                return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: int4 weights hold -8 (expected [-7, 7]), kind", kind);
    } else if (gs || soff || sbytes) {
        return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: group_size / scales given for a float tensor, kind", kind);
    }
    if (place) {
        place->dtype = dtype;
        place->rows = rows;
        place->cols = cols;
        place->group_size = gs;
        place->data = blob + off;
        place->scale = dtype >= TINYLM_DTYPE_S8 ? (const float *)(const void *)(blob + soff) : NULL;
    }
    return TINYLM_OK;
}

static int check_tensors(const uint8_t *blob, size_t size, const tinylm_config *c, uint32_t n, uint32_t off,
                         char *msg, size_t ms)
{
    if (n != expected_tensor_count(c))
        return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: wrong number of tensors for this config", n);
    if (off % TINYLM_BLOB_ALIGN || !in_blob(off, (uint64_t)n * ENTRY_U32 * 4u, size))
        return failv(msg, ms, TINYLM_E_TRUNCATED, "tensor table: misaligned or runs past the end of the blob", off);
    uint64_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = blob + off + (size_t)i * ENTRY_U32 * 4u;
        const uint64_t key = (uint64_t)rd32(e) << 40 | (uint64_t)(rd32(e + 4) & 0xFFFFFu) << 20 | (rd32(e + 8) & 0xFFFFFu);
        if (rd32(e + 4) > 0xFFFFFu || rd32(e + 8) > 0xFFFFFu || (i && key <= prev))
            return failv(msg, ms, TINYLM_E_TENSOR, "tensor table: entries are not sorted by (kind, layer, expert) without repeats, at", i);
        prev = key;
        const int st = check_entry(blob, size, c, e, NULL, msg, ms);
        if (st != TINYLM_OK)
            return st;
    }
    return TINYLM_OK;
}

int tinylm_validate(const uint8_t *blob, size_t size, tinylm_config *cfg, char *msg, size_t msg_size)
{
    tinylm_config c;
    memset(&c, 0, sizeof c);
    if (msg && msg_size)
        msg[0] = '\0';
    if (!blob || !cfg)
        return fail(msg, msg_size, TINYLM_E_ARG, "tinylm_validate: blob and cfg must not be NULL");
    if (!host_is_little_endian())
        return fail(msg, msg_size, TINYLM_E_FORMAT, "the blob is little-endian; this host is not");
    if ((uintptr_t)blob % TINYLM_BLOB_ALIGN)
        return fail(msg, msg_size, TINYLM_E_ARG, "the blob must start at a 16-byte-aligned address");
    if (size < HEADER_BYTES)
        return failv(msg, msg_size, TINYLM_E_TRUNCATED, "the blob is shorter than its 128-byte header", size);
    if (memcmp(blob, "TLMB", 4))
        return fail(msg, msg_size, TINYLM_E_FORMAT, "not a tinylm model blob (magic is not \"TLMB\")");
    if (rd32(blob + 4) < 1 || rd32(blob + 4) > TINYLM_BLOB_VERSION)
        return failv(msg, msg_size, TINYLM_E_FORMAT, "blob format version not supported (this runtime reads 1 and 2)", rd32(blob + 4));
    if (rd32(blob + 8) != HEADER_BYTES)
        return failv(msg, msg_size, TINYLM_E_FORMAT, "header_bytes must be 128", rd32(blob + 8));
    if (rd32(blob + 12) != size)
        return failv(msg, msg_size, TINYLM_E_TRUNCATED, "the blob's size is not the blob_bytes of its header: truncated or padded", size);
    for (uint32_t i = 68; i < HEADER_BYTES; i += 4)
        if (rd32(blob + i))
            return failv(msg, msg_size, TINYLM_E_FORMAT, "reserved header bytes are not zero, at offset", i);
    int st = check_config(blob, &c, msg, msg_size);
    if (st == TINYLM_OK)
        st = check_tokenizer(blob, size, rd32(blob + 52), rd32(blob + 56), &c, msg, msg_size);
    if (st == TINYLM_OK)
        st = check_tensors(blob, size, &c, rd32(blob + 60), rd32(blob + 64), msg, msg_size);
    if (st == TINYLM_OK && tinylm_arena_bytes(&c) == 0)
        st = fail(msg, msg_size, TINYLM_E_CONFIG, "config: the arena this model needs does not fit in size_t");
    if (st == TINYLM_OK)
        *cfg = c;
    return st;
}

/* ============================================================================================
 * the arena: one caller-provided buffer holds the model struct, the KV cache and every scratch row
 */

typedef struct {
    uint64_t used;
    uint8_t *base;            /* NULL: only count */
} arena;

static void *take(arena *a, uint64_t bytes)
{
    uint8_t *p = a->base ? a->base + a->used : NULL;
    a->used += (bytes + 15u) & ~(uint64_t)15u;
    return p;
}

/* Every piece of the arena, in one place: run once to count (base NULL), once to lay out. */
static void layout(arena *a, tinylm_model *m, const tinylm_config *c)
{
    const uint64_t C = c->n_embd, V = c->vocab_size, T = c->block_size, L = c->n_layer;
    const uint64_t n_mlp = c->n_expert ? c->n_expert : 1u;
    rt_layer *layers = take(a, L * sizeof(rt_layer));
    rt_mlp *mlps = take(a, L * n_mlp * sizeof(rt_mlp));
    float *kc = take(a, L * T * C * 4u), *vc = take(a, L * T * C * 4u);
    float *x = take(a, C * 4u), *xb = take(a, C * 4u), *xb2 = take(a, C * 4u), *qkv = take(a, 3 * C * 4u);
    float *hb = take(a, 4 * C * 4u), *hb2 = take(a, 4 * C * 4u);
    float *moe_out = take(a, C * 4u), *moe_y = take(a, C * 4u), *router = take(a, (n_mlp + 1) * 4u);
    float *moe_gates = take(a, 2 * n_mlp * 4u);
    uint32_t *moe_chosen = take(a, n_mlp * 4u);
    uint8_t *moe_taken = take(a, n_mlp);
    float *att = take(a, 2 * T * 4u), *logits = take(a, V * 4u);
    uint16_t *xh = take(a, 4 * C * 2u);
    int8_t *xq = take(a, 4 * C);
    float *xs = take(a, 4 * C * 4u);
    double *probs = take(a, V * 8u);
    uint32_t *order = take(a, V * 4u), *order_tmp = take(a, V * 4u);
    if (!m)
        return;
    m->layers = layers;
    for (uint64_t l = 0; l < L; l++)
        layers[l].mlp = mlps + l * n_mlp;
    m->key_cache = kc;
    m->value_cache = vc;
    m->x = x; m->xb = xb; m->xb2 = xb2; m->qkv = qkv; m->hb = hb; m->hb2 = hb2;
    m->moe_out = moe_out; m->moe_y = moe_y; m->router_logits = router;
    m->moe_gates = moe_gates; m->moe_chosen = moe_chosen; m->moe_taken = moe_taken;
    m->att = att; m->logits = logits; m->xh = xh; m->xq = xq; m->xs = xs;
    m->probs = probs; m->order = order; m->order_tmp = order_tmp;
}

size_t tinylm_arena_bytes(const tinylm_config *cfg)
{
    if (!cfg)
        return 0;
    arena a = {0, NULL};
    take(&a, sizeof(tinylm_model));
    layout(&a, NULL, cfg);
    const uint64_t total = a.used + TINYLM_BLOB_ALIGN;      /* slack to align the caller's pointer */
    return total > (uint64_t)SIZE_MAX ? 0 : (size_t)total;
}

int tinylm_init(tinylm_model **model, const uint8_t *blob, size_t size, void *arena_mem, size_t arena_size,
                char *msg, size_t msg_size)
{
    tinylm_config c;
    if (!model || !arena_mem)
        return fail(msg, msg_size, TINYLM_E_ARG, "tinylm_init: model and arena must not be NULL");
    *model = NULL;
    int st = tinylm_validate(blob, size, &c, msg, msg_size);
    if (st != TINYLM_OK)
        return st;
    const size_t need = tinylm_arena_bytes(&c);
    if (arena_size < need)
        return failv(msg, msg_size, TINYLM_E_ARENA, "the arena is smaller than tinylm_arena_bytes()", arena_size);
    uint8_t *base = (uint8_t *)arena_mem;
    base += (TINYLM_BLOB_ALIGN - (uintptr_t)base % TINYLM_BLOB_ALIGN) % TINYLM_BLOB_ALIGN;
    memset(base, 0, need - TINYLM_BLOB_ALIGN);
    arena a = {0, base};
    tinylm_model *m = take(&a, sizeof(tinylm_model));
    layout(&a, m, &c);
    m->cfg = c;
    m->attn_scale = (float)(1.0 / sqrt_newton((double)(c.n_embd / c.n_head)));

    /* the tensors: validated above, so check_entry only places them now */
    const uint32_t n = rd32(blob + 60), off = rd32(blob + 64);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = blob + off + (size_t)i * ENTRY_U32 * 4u;
        const uint32_t kind = rd32(e), l = rd32(e + 4), x = rd32(e + 8);
        rt_matrix t;
        st = check_entry(blob, size, &c, e, &t, msg, msg_size);
        if (st != TINYLM_OK)
            return st;
        const float *vec = (const float *)t.data;
        rt_layer *L = kind > TINYLM_T_LNF_B ? &m->layers[l] : NULL;
        switch (kind) {
        case TINYLM_T_WTE: m->wte = t; break;
        case TINYLM_T_WPE: m->wpe = t; break;
        case TINYLM_T_LNF_W: m->lnf_w = vec; break;
        case TINYLM_T_LNF_B: m->lnf_b = vec; break;
        case TINYLM_T_LN1_W: L->ln1_w = vec; break;
        case TINYLM_T_LN1_B: L->ln1_b = vec; break;
        case TINYLM_T_ATTN_W: L->attn = t; break;
        case TINYLM_T_ATTN_B: L->attn_b = vec; break;
        case TINYLM_T_ATTN_PROJ_W: L->attn_proj = t; break;
        case TINYLM_T_ATTN_PROJ_B: L->attn_proj_b = vec; break;
        case TINYLM_T_LN2_W: L->ln2_w = vec; break;
        case TINYLM_T_LN2_B: L->ln2_b = vec; break;
        case TINYLM_T_FC_W: L->mlp[x].fc = t; break;
        case TINYLM_T_FC_B: L->mlp[x].fc_b = vec; break;
        case TINYLM_T_MLP_PROJ_W: L->mlp[x].proj = t; break;
        case TINYLM_T_MLP_PROJ_B: L->mlp[x].proj_b = vec; break;
        case TINYLM_T_ROUTER_W: L->router = t; break;
        default: return fail(msg, msg_size, TINYLM_E_TENSOR, "internal: unplaced tensor kind");
        }
    }

    /* the tokenizer tables (validated) */
    const uint8_t *t = blob + rd32(blob + 52);
    tinylm_bpe *bpe = &m->bpe;
    bpe->n_merges = rd32(t + 4);
    bpe->n_ranges = rd32(t + 12);
    bpe->pattern = c.pattern;
    bpe->byte_ids = (const uint32_t *)(const void *)(t + TOK_HEADER_BYTES);
    m->token_start = bpe->byte_ids + 256;
    bpe->merges = m->token_start + c.n_tokens + 1;
    bpe->pair_index = bpe->merges + 3u * bpe->n_merges;
    bpe->ranges = bpe->pair_index + bpe->n_merges;
    bpe->pair_hash = NULL;                            /* binary search: no RAM beyond the arena */
    tinylm_bpe_init(bpe);
    m->pool = (const uint8_t *)(bpe->ranges + 2u * bpe->n_ranges);
    *model = m;
    return TINYLM_OK;
}

const tinylm_config *tinylm_model_config(const tinylm_model *m)
{
    return m ? &m->cfg : NULL;
}

/* ============================================================================================
 * the forward pass of one token (tinylm/model.py GPT.forward with a KV cache, batch 1, T = 1)
 */

/* y (rows,) = x (cols,) @ w.T + b, in the precision the blob gives this layer (tinylm.quant.layers) */
static void linear(tinylm_model *m, const rt_matrix *w, const float *b, const float *x, float *y)
{
    switch (w->dtype) {
    case TINYLM_DTYPE_F32:
        tinylm_matmul_f32(x, (const float *)w->data, b, y, 1, w->rows, w->cols);
        break;
    case TINYLM_DTYPE_F16:                          /* Fp16Linear: the activations rounded to fp16 too */
        tinylm_f32_to_f16(x, m->xh, w->cols);
        tinylm_matmul_f16(m->xh, (const uint16_t *)w->data, b, y, 1, w->rows, w->cols);
        break;
    case TINYLM_DTYPE_S8:                           /* Int8Linear: activations quantized per group */
        tinylm_linear_s8(x, (const int8_t *)w->data, w->scale, b, y, m->xq, m->xs, 1, w->rows, w->cols,
                         w->group_size);
        break;
    default:                                        /* Int4Linear: the same int8 activations, 4-bit weights */
        tinylm_linear_s4(x, (const uint8_t *)w->data, w->scale, b, y, m->xq, m->xs, 1, w->rows, w->cols,
                         w->group_size);
        break;
    }
}

/* out (cols,) = row `id` of an embedding table in its precision (QuantizedEmbedding.rows) */
static void embedding_row(const rt_matrix *t, int32_t id, float *out)
{
    if (t->dtype == TINYLM_DTYPE_F32)
        tinylm_embedding_f32((const float *)t->data, &id, out, 1, t->cols);
    else if (t->dtype == TINYLM_DTYPE_F16)
        tinylm_embedding_f16((const uint16_t *)t->data, &id, out, 1, t->cols);
    else if (t->dtype == TINYLM_DTYPE_S8)
        tinylm_embedding_s8((const int8_t *)t->data, t->scale, &id, out, 1, t->cols, t->group_size);
    else                                            /* int4: the one row dequantized (Int4Weight.rows) */
        tinylm_dequantize_s4((const uint8_t *)t->data + (size_t)id * (t->cols / 2),
                             t->scale + (size_t)id * (t->cols / t->group_size), out, 1, t->cols, t->group_size);
}

/* out (C,) = c_proj(GELU(c_fc(x))) */
static void mlp(tinylm_model *m, const rt_mlp *p, const float *x, float *out)
{
    linear(m, &p->fc, p->fc_b, x, m->hb);           /* (4C,) */
    tinylm_gelu_f32(m->hb, m->hb2, p->fc.rows);     /* (4C,) */
    linear(m, &p->proj, p->proj_b, m->hb2, out);    /* (C,) */
}

/* out (C,) = the mixture of experts of tinylm/moe.py for one token: the top-k router logits (best
 * first, ties to the lower expert id), gates = softmax over those k logits, out = sum of gate * expert
 * output, added in ascending expert id as MoE.forward's index_add does. */
static void moe(tinylm_model *m, const rt_layer *L, const float *x, float *out)
{
    const uint32_t E = m->cfg.n_expert, k = m->cfg.expert_top_k, C = m->cfg.n_embd;
    uint32_t *chosen = m->moe_chosen;
    float *chosen_logits = m->moe_gates, *gates = m->moe_gates + E;
    uint8_t *taken = m->moe_taken;
    linear(m, &L->router, NULL, x, m->router_logits);          /* (E,) */
    memset(taken, 0, E);
    for (uint32_t j = 0; j < k; j++) {                          /* k passes of argmax: k is small */
        uint32_t best = E;
        for (uint32_t e = 0; e < E; e++)
            if (!taken[e] && (best == E || m->router_logits[e] > m->router_logits[best]))
                best = e;
        if (best == E)                                          /* NaN logits: take the first left */
            for (best = 0; taken[best]; best++) {}
        taken[best] = 1;
        chosen[j] = best;
        chosen_logits[j] = m->router_logits[best];
    }
    tinylm_softmax_f32(chosen_logits, gates, 1, k, 0);          /* (k,) */
    for (uint32_t i = 0; i < C; i++)
        out[i] = 0.0f;
    for (uint32_t e = 0; e < E; e++) {                          /* ascending expert id */
        if (!taken[e])
            continue;
        float g = 0.0f;
        for (uint32_t j = 0; j < k; j++)
            if (chosen[j] == e)
                g = gates[j];
        mlp(m, &L->mlp[e], x, m->moe_y);
        for (uint32_t i = 0; i < C; i++)
            out[i] += m->moe_y[i] * g;
    }
}

const float *tinylm_forward(tinylm_model *m, int32_t token, uint32_t pos)
{
    if (!m || token < 0 || (uint32_t)token >= m->cfg.vocab_size || pos >= m->cfg.block_size)
        return NULL;
    const tinylm_config *c = &m->cfg;
    const size_t C = c->n_embd, hs = C / c->n_head, T = c->block_size;
    float *x = m->x, *xb = m->xb, *xb2 = m->xb2;

    embedding_row(&m->wte, token, x);                           /* x = wte[token] + wpe[pos]   (C,) */
    embedding_row(&m->wpe, (int32_t)pos, xb);
    tinylm_residual_add_f32(x, xb, C);
    for (uint32_t l = 0; l < c->n_layer; l++) {
        const rt_layer *L = &m->layers[l];
        float *kc = m->key_cache + (size_t)l * T * C, *vc = m->value_cache + (size_t)l * T * C;
        /* x = x + attn(ln_1(x)) */
        tinylm_layernorm_f32(x, L->ln1_w, L->ln1_b, xb, 1, C, c->ln_eps);
        linear(m, &L->attn, L->attn_b, xb, m->qkv);             /* (3C,) = q, k, v */
        memcpy(kc + (size_t)pos * C, m->qkv + C, C * sizeof(float));       /* cache row pos */
        memcpy(vc + (size_t)pos * C, m->qkv + 2 * C, C * sizeof(float));
        tinylm_attention_f32(m->qkv, kc, vc, xb2, m->att, c->n_head, hs, (size_t)pos + 1, C, m->attn_scale);
        linear(m, &L->attn_proj, L->attn_proj_b, xb2, xb);      /* (C,) */
        tinylm_residual_add_f32(x, xb, C);
        /* x = x + mlp(ln_2(x)) */
        tinylm_layernorm_f32(x, L->ln2_w, L->ln2_b, xb, 1, C, c->ln_eps);
        if (c->n_expert)
            moe(m, L, xb, xb2);
        else
            mlp(m, &L->mlp[0], xb, xb2);
        tinylm_residual_add_f32(x, xb2, C);
    }
    tinylm_layernorm_f32(x, m->lnf_w, m->lnf_b, xb, 1, C, c->ln_eps);
    linear(m, &m->wte, NULL, xb, m->logits);                    /* (vocab_size,) tied head */
    return m->logits;
}

/* ============================================================================================
 * the tokenizer: pre-split (GPT-2 / GPT-4 patterns, by hand) then byte-level BPE per chunk
 *
 * One encoder serves the runtime and Python: tinylm_bpe_encode works on a tinylm_bpe, a struct of
 * pointers to the tables (the blob's for tinylm_encode, tinylm.tokenizer's own NumPy arrays for
 * Python), and on memory the caller gives it. The Python tokenizer stays the readable reference;
 * tests/test_tokenizer_c.py checks the two give the same ids. Reading order: the character classes,
 * the two pre-split patterns, the merge lookup, the three ways to merge a chunk, the loop over chunks.
 *
 * How the pre-split gives the `regex` module's chunks without a regex engine: findall tries the
 * pattern's alternatives in order at the current position and takes the first that matches; every
 * alternative of GPT-2's and GPT-4's patterns is a literal (a space, an apostrophe, a contraction)
 * and then a run of one character class (\p{L}, \p{N}, \s, or none of them), so each is a loop over
 * characters, written in the pattern's order in chunk_gpt2 / chunk_gpt4. The classes are the regex
 * module's own: the ranges table is made by running \p{L}+, \p{N}+ and \s+ over every code point
 * (tinylm/bpe/native.py, tinylm/io/cblob.py). The one lookahead, \s+(?!\S), gives back the last
 * whitespace character when a non-space follows; GPT-4's possessive ?+ and ++ never give back, so
 * their alternative simply fails; (?i) folds U+017F (long s) to s, as regex does. Tests compare the
 * chunks with regex.findall on adversarial and random text (hypothesis).
 */

enum { CLS_L = 1, CLS_N = 2, CLS_S = 4 };        /* \p{L}, \p{N}, \s; 0 = anything else */
#define CP_INVALID 0xFFFFFFFFu
#define NO_RANK UINT32_MAX                       /* the rank of a pair that is not a merge */
#define SHORT_CHUNK 64u                          /* chunks up to this many bytes merge on the stack */

/* The class bits of code point cp (binary search in the sorted ranges). */
static uint32_t cp_class(const tinylm_bpe *b, uint32_t cp)
{
    uint32_t lo = 0, hi = b->n_ranges;
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (cp < b->ranges[2 * mid])
            hi = mid;
        else if (cp > (b->ranges[2 * mid + 1] & 0xFFFFFFu))
            lo = mid + 1;
        else
            return b->ranges[2 * mid + 1] >> 24;
    }
    return 0;
}

/* Decode the code point at s[i] (strict UTF-8); returns its length in bytes. A byte that does not
 * start a valid sequence is one "character" CP_INVALID of class 0. */
static size_t utf8_at(const uint8_t *s, size_t len, size_t i, uint32_t *cp)
{
    const uint8_t b = s[i];
    size_t n;
    uint32_t v, min;
    if (b < 0x80) { *cp = b; return 1; }
    if (b >= 0xC2 && b <= 0xDF) { n = 2; v = b & 0x1Fu; min = 0x80; }
    else if (b >= 0xE0 && b <= 0xEF) { n = 3; v = b & 0x0Fu; min = 0x800; }
    else if (b >= 0xF0 && b <= 0xF4) { n = 4; v = b & 0x07u; min = 0x10000; }
    else { *cp = CP_INVALID; return 1; }
    if (len - i < n) { *cp = CP_INVALID; return 1; }
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80) { *cp = CP_INVALID; return 1; }
        v = v << 6 | (s[i + k] & 0x3Fu);
    }
    if (v < min || v > MAX_CP || (v >= 0xD800 && v <= 0xDFFF)) { *cp = CP_INVALID; return 1; }
    *cp = v;
    return n;
}

void tinylm_bpe_init(tinylm_bpe *bpe)
{
    if (!bpe)
        return;
    for (uint32_t c = 0; c < 128u; c++)
        bpe->ascii_class[c] = (uint8_t)cp_class(bpe, c);
}

typedef struct {              /* the text being split, with its classes at hand */
    const tinylm_bpe *b;
    const uint8_t *s;
    size_t len;
} text_t;

/* The class of the character at i, its code point and its length (ASCII from the 128-entry table). */
static uint32_t cls_at(const text_t *t, size_t i, uint32_t *cp, size_t *n)
{
    const uint8_t c = t->s[i];
    if (c < 0x80) {
        *cp = c;
        *n = 1;
        return t->b->ascii_class[c];
    }
    *n = utf8_at(t->s, t->len, i, cp);
    return *cp == CP_INVALID ? 0u : cp_class(t->b, *cp);
}

/* End of the run of characters from i whose class satisfies: (cls & mask) != 0, or cls == 0 when
 * mask == 0 ("[^\s\p{L}\p{N}]"). `limit` caps the number of characters (0 = no cap). */
static size_t run_end(const text_t *t, size_t i, uint32_t mask, size_t limit)
{
    size_t count = 0;
    while (i < t->len && (!limit || count < limit)) {
        uint32_t cp;
        size_t n;
        const uint32_t cls = cls_at(t, i, &cp, &n);
        if (mask ? !(cls & mask) : cls != 0)
            break;
        i += n;
        count++;
    }
    return i;
}

/* \s+(?!\S) | \s+ at i (class of s[i] is \s): the whitespace run, less its last character when a
 * non-space follows and the run is longer than one (that character then leads the next word). */
static size_t whitespace_end(const text_t *t, size_t i)
{
    size_t j = i, last = i;
    while (j < t->len) {
        uint32_t cp;
        size_t n;
        if (!(cls_at(t, j, &cp, &n) & CLS_S))
            break;
        last = j;
        j += n;
    }
    if (j == t->len || last == i)
        return j;
    return last;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * The alternatives are tried in the regex's order; each returns the end of the chunk at i. */
static size_t chunk_gpt2(const text_t *t, size_t i)
{
    const uint8_t *s = t->s;
    const size_t rest = t->len - i;
    if (s[i] == '\'' && rest >= 2) {
        const uint8_t a = s[i + 1], b = rest >= 3 ? s[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return i + 3;
    }
    uint32_t cp;
    size_t n;
    size_t k = i;
    if (s[i] == ' ' && rest >= 2)
        k = i + 1;                                    /* " ?" : try with the space first */
    const uint32_t cls = cls_at(t, k, &cp, &n);
    if (cls & CLS_L)
        return run_end(t, k, CLS_L, 0);
    if (cls & CLS_N)
        return run_end(t, k, CLS_N, 0);
    if (cls == 0)
        return run_end(t, k, 0, 0);
    /* s[k] is whitespace (and then so is s[i]: the space, or s[i] itself) */
    return whitespace_end(t, i);
}

/* Does the character at i match (?i:c) for ASCII letter c? (regex also folds U+017F, long s, to s) */
static size_t fold_match(const text_t *t, size_t i, char c)
{
    if (i >= t->len)
        return 0;
    const uint8_t b = t->s[i];
    if (b == (uint8_t)c || b == (uint8_t)(c - 32))
        return 1;
    if (c == 's' && t->len - i >= 2 && b == 0xC5 && t->s[i + 1] == 0xBF)
        return 2;                                     /* U+017F in UTF-8 */
    return 0;
}

/* GPT-4 (cl100k): '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*
 *                 |\s*[\r\n]|\s+(?!\S)|\s+ */
static size_t chunk_gpt4(const text_t *t, size_t i)
{
    const uint8_t *s = t->s;
    uint32_t cp, cp1;
    size_t n, n1, f, g;
    if (s[i] == '\'') {
        static const char one[4] = {'s', 'd', 'm', 't'};
        for (int j = 0; j < 4; j++)
            if ((f = fold_match(t, i + 1, one[j])))
                return i + 1 + f;
        static const char two[3][2] = {{'l', 'l'}, {'v', 'e'}, {'r', 'e'}};
        for (int j = 0; j < 3; j++)
            if ((f = fold_match(t, i + 1, two[j][0])) && (g = fold_match(t, i + 1 + f, two[j][1])))
                return i + 1 + f + g;
    }
    const uint32_t cls = cls_at(t, i, &cp, &n);
    if (cls & CLS_L)                                  /* \p{L}+ */
        return run_end(t, i, CLS_L, 0);
    if (cp != '\r' && cp != '\n' && !(cls & CLS_N) && i + n < t->len &&
        (cls_at(t, i + n, &cp1, &n1) & CLS_L))        /* one other character, then \p{L}+ */
        return run_end(t, i + n, CLS_L, 0);
    if (cls & CLS_N)                                  /* \p{N}{1,3} */
        return run_end(t, i, CLS_N, 3);
    size_t k = i;
    if (s[i] == ' ' && i + 1 < t->len)
        k = i + 1;
    if (cls_at(t, k, &cp1, &n1) == 0) {               /* " ?[^\s\p{L}\p{N}]++[\r\n]*" */
        size_t j = run_end(t, k, 0, 0);
        while (j < t->len && (s[j] == '\r' || s[j] == '\n'))
            j++;
        return j;
    }
    /* s[i] is whitespace: \s*[\r\n] ends at the last \r or \n of the whitespace run, if any */
    size_t j = i, end = 0;
    while (j < t->len) {
        if (!(cls_at(t, j, &cp1, &n1) & CLS_S))
            break;
        if (cp1 == '\r' || cp1 == '\n')
            end = j + 1;
        j += n1;
    }
    if (end)
        return end;
    return whitespace_end(t, i);
}

size_t tinylm_bpe_chunk_end(const tinylm_bpe *bpe, const uint8_t *text, size_t len, size_t i)
{
    if (!bpe || !text || i >= len)
        return len;
    const text_t t = {bpe, text, len};
    size_t end = len;                                 /* pattern 0: the whole text is one chunk */
    if (bpe->pattern == 1)
        end = chunk_gpt2(&t, i);
    else if (bpe->pattern == 2)
        end = chunk_gpt4(&t, i);
    if (end <= i) {              /* only a corrupt class table (say, ' ' not \s) gets here: one */
        uint32_t cp;             /* character is then a chunk of its own, so every loop ends */
        end = i + utf8_at(text, len, i, &cp);
    }
    return end;
}

/* The slot of pair (a, b) in a hash table of 2^bits slots: Fibonacci hashing of the 64-bit key. */
static uint32_t pair_slot(uint32_t a, uint32_t b, uint32_t bits)
{
    const uint64_t key = (uint64_t)a << 32 | b;
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64u - bits));
}

int tinylm_bpe_hash(tinylm_bpe *bpe, uint32_t *slots, uint32_t hash_bits)
{
    if (!bpe || !slots || hash_bits < 1u || hash_bits > 31u || (1ull << hash_bits) < 2ull * bpe->n_merges)
        return TINYLM_E_ARG;
    const uint32_t mask = (1u << hash_bits) - 1u;
    for (uint32_t h = 0; h <= mask; h++)
        slots[h] = NO_RANK;
    for (uint32_t r = 0; r < bpe->n_merges; r++) {   /* linear probing: the next free slot */
        uint32_t h = pair_slot(bpe->merges[3u * r], bpe->merges[3u * r + 1], hash_bits);
        while (slots[h] != NO_RANK)
            h = (h + 1u) & mask;
        slots[h] = r;
    }
    bpe->pair_hash = slots;
    bpe->hash_bits = hash_bits;
    return TINYLM_OK;
}

/* The rank of merge (a, b), or NO_RANK when the pair is not a merge: from the hash table when the
 * caller made one (tinylm_bpe_hash), else by binary search in pair_index (the blob's tables in flash). */
static uint32_t merge_rank(const tinylm_bpe *b, uint32_t a, uint32_t c)
{
    if (b->pair_hash) {
        const uint32_t mask = (1u << b->hash_bits) - 1u;
        for (uint32_t h = pair_slot(a, c, b->hash_bits);; h = (h + 1u) & mask) {
            const uint32_t r = b->pair_hash[h];
            if (r == NO_RANK || (b->merges[3u * r] == a && b->merges[3u * r + 1] == c))
                return r;
        }
    }
    const uint64_t key = (uint64_t)a << 32 | c;
    uint32_t lo = 0, hi = b->n_merges;
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2, r = b->pair_index[mid];
        const uint64_t k = (uint64_t)b->merges[3u * r] << 32 | b->merges[3u * r + 1];
        if (k == key)
            return r;
        if (k < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NO_RANK;
}

/* The three ways to merge the ids w[0 .. n) of one chunk; all repeatedly turn the lowest-ranked
 * adjacent pair (the leftmost on ties) into its merged id, until no pair is a merge, and return the
 * new n. They differ only in bookkeeping:
 *   merge_short  n <= SHORT_CHUNK: the pair ranks in an array on the stack, the two around each merge
 *                recomputed (Tokenizer._encode_chunk);
 *   merge_long   a longer chunk, with the caller's work memory: a tournament tree of the pair ranks
 *                and a linked list of the tokens, O(n log n) (the result of Tokenizer._encode_long_chunk);
 *   merge_rescan a longer chunk without room to work (tinylm_encode on a board): every pair's rank
 *                recomputed at every merge, O(n^2) lookups, no memory. */
static size_t merge_short(const tinylm_bpe *b, int32_t *w, size_t n)
{
    uint32_t rank[SHORT_CHUNK];                      /* rank[i]: the pair (w[i], w[i+1]) */
    for (size_t i = 0; i + 1 < n; i++)
        rank[i] = merge_rank(b, (uint32_t)w[i], (uint32_t)w[i + 1]);
    while (n >= 2) {
        size_t at = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[at])
                at = i;
        if (rank[at] == NO_RANK)
            break;
        w[at] = (int32_t)b->merges[3u * rank[at] + 2];
        memmove(w + at + 1, w + at + 2, (n - at - 2) * sizeof *w);
        memmove(rank + at, rank + at + 1, (n - at - 2) * sizeof *rank);
        n--;
        if (at > 0)                                   /* the pairs on either side of the new token */
            rank[at - 1] = merge_rank(b, (uint32_t)w[at - 1], (uint32_t)w[at]);
        if (at + 1 < n)
            rank[at] = merge_rank(b, (uint32_t)w[at], (uint32_t)w[at + 1]);
    }
    return n;
}

/* The tournament tree: tree[P + i] is the rank of the pair that token i starts (NO_RANK when none),
 * tree[k] the smaller of its two children, so tree[1] is the best rank. P is a power of two >= n. */
static void tree_set(uint32_t *tree, size_t P, size_t i, uint32_t rank)
{
    size_t k = P + i;
    tree[k] = rank;
    for (k /= 2; k >= 1; k /= 2)
        tree[k] = tree[2 * k] <= tree[2 * k + 1] ? tree[2 * k] : tree[2 * k + 1];
}

static size_t tree_leaves(size_t n)
{
    size_t P = 1;
    while (P < n)
        P *= 2;
    return P;
}

/* work: 2P + 2n words (tinylm_bpe_work_words). Token i of the chunk stays at w[i] until the end;
 * next[i] / prev[i] link the tokens still alive (END past either end). */
static size_t merge_long(const tinylm_bpe *b, int32_t *w, size_t n, uint32_t *work)
{
    const uint32_t END = UINT32_MAX;
    const size_t P = tree_leaves(n);
    uint32_t *tree = work, *next = work + 2 * P, *prev = next + n;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (uint32_t)(i + 1) : END;
        prev[i] = i > 0 ? (uint32_t)(i - 1) : END;
    }
    for (size_t i = 0; i < P; i++)
        tree[P + i] = i + 1 < n ? merge_rank(b, (uint32_t)w[i], (uint32_t)w[i + 1]) : NO_RANK;
    for (size_t k = P - 1; k >= 1; k--)
        tree[k] = tree[2 * k] <= tree[2 * k + 1] ? tree[2 * k] : tree[2 * k + 1];
    while (tree[1] != NO_RANK) {
        size_t k = 1;                                 /* down to the leftmost leaf holding the best */
        while (k < P)
            k = tree[2 * k] <= tree[2 * k + 1] ? 2 * k : 2 * k + 1;
        const size_t i = k - P, j = next[i];          /* merge token j into token i */
        w[i] = (int32_t)b->merges[3u * tree[1] + 2];
        next[i] = next[j];
        if (next[j] != END)
            prev[next[j]] = (uint32_t)i;
        tree_set(tree, P, j, NO_RANK);
        tree_set(tree, P, i, next[i] != END ? merge_rank(b, (uint32_t)w[i], (uint32_t)w[next[i]]) : NO_RANK);
        if (prev[i] != END)
            tree_set(tree, P, prev[i], merge_rank(b, (uint32_t)w[prev[i]], (uint32_t)w[i]));
    }
    size_t out = 0;                                   /* the live tokens, in order, to the front */
    for (uint32_t i = 0; i != END; i = next[i])
        w[out++] = w[i];
    return out;
}

static size_t merge_rescan(const tinylm_bpe *b, int32_t *w, size_t n)
{
    while (n >= 2) {
        uint32_t best = NO_RANK;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            const uint32_t r = merge_rank(b, (uint32_t)w[i], (uint32_t)w[i + 1]);
            if (r < best) {
                best = r;
                at = i;
            }
        }
        if (best == NO_RANK)
            break;
        w[at] = (int32_t)b->merges[3u * best + 2];
        memmove(w + at + 1, w + at + 2, (n - at - 2) * sizeof *w);
        n--;
    }
    return n;
}

size_t tinylm_bpe_work_words(size_t len)
{
    if (len >= ((size_t)1 << 30))                     /* positions must fit the u32 links */
        return 0;
    return 2 * tree_leaves(len) + 2 * len;
}

long tinylm_bpe_encode(const tinylm_bpe *bpe, const uint8_t *text, size_t len, int32_t *ids, size_t capacity,
                       uint32_t *work, size_t work_words)
{
    if (!bpe || (!text && len) || (!ids && capacity) || (!work && work_words) || bpe->pattern > 2u)
        return TINYLM_E_ARG;
    size_t i = 0, at = 0;
    while (i < len) {
        const size_t end = tinylm_bpe_chunk_end(bpe, text, len, i);
        const size_t n = end - i;
        if (n > capacity - at)
            return TINYLM_E_CAPACITY;
        int32_t *w = ids + at;                        /* the chunk's byte ids, merged in place */
        for (size_t k = 0; k < n; k++)
            w[k] = (int32_t)bpe->byte_ids[text[i + k]];
        if (n <= SHORT_CHUNK)
            at += merge_short(bpe, w, n);
        else if (work_words && work_words >= tinylm_bpe_work_words(n))
            at += merge_long(bpe, w, n, work);
        else
            at += merge_rescan(bpe, w, n);
        i = end;
    }
    return (long)at;
}

/* The runtime's encode: the encoder above on the blob's tables, with no work memory. */
long tinylm_encode(const tinylm_model *m, const char *text, size_t len, int32_t *ids, size_t capacity)
{
    if (!m)
        return TINYLM_E_ARG;
    return tinylm_bpe_encode(&m->bpe, (const uint8_t *)text, len, ids, capacity, NULL, 0);
}

const uint8_t *tinylm_token_bytes(const tinylm_model *m, int32_t id, size_t *len)
{
    if (len)
        *len = 0;
    if (!m || !len || id < 0 || (uint32_t)id >= m->cfg.n_tokens)
        return NULL;
    *len = m->token_start[id + 1] - m->token_start[id];
    return *len ? m->pool + m->token_start[id] : NULL;
}

/* ============================================================================================
 * sampling (tinylm/generate.py next_token_probs + sample_next, in double precision as NumPy does)
 */

static uint64_t splitmix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int tinylm_sampler_init(tinylm_sampler *s, float temperature, uint32_t top_k, float top_p, uint64_t seed)
{
    if (!s || !(temperature >= 0.0f && temperature <= 3.4028234663852886e38f) || !(top_p > 0.0f))
        return TINYLM_E_ARG;
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    s->state = splitmix64(seed);
    if (!s->state)
        s->state = 1;
    return TINYLM_OK;
}

double tinylm_random(tinylm_sampler *s)
{
    uint64_t x = s->state;                            /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->state = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

/* Stable sort of order[0..n) by p[] descending (ties keep ascending ids): bottom-up merge sort. */
static void sort_desc(const double *p, uint32_t *order, uint32_t *tmp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                tmp[k++] = p[order[b]] > p[order[a]] ? order[b++] : order[a++];
            while (a < mid)
                tmp[k++] = order[a++];
            while (b < hi)
                tmp[k++] = order[b++];
        }
        memcpy(order, tmp, n * sizeof(uint32_t));
    }
}

int32_t tinylm_sample(tinylm_model *m, tinylm_sampler *s, const float *logits)
{
    const size_t V = m->cfg.vocab_size;
    double *p = m->probs;
    if (s->temperature == 0.0f) {                     /* greedy: the first maximum */
        size_t best = 0;
        for (size_t i = 1; i < V; i++)
            if (logits[i] > logits[best] || logits[best] != logits[best])
                best = i;
        return (int32_t)best;
    }
    const double temp = (double)s->temperature;
    for (size_t i = 0; i < V; i++)                    /* 1. divide by the temperature */
        p[i] = (double)logits[i] / temp;
    if (s->top_k && s->top_k < V) {                   /* 2. keep the k largest (ties: lower id) */
        sort_desc(p, m->order, m->order_tmp, V);
        for (size_t i = s->top_k; i < V; i++)
            p[m->order[i]] = -1.0 / 0.0;
    }
    double mx = p[0], sum = 0.0;                      /* 3. softmax */
    for (size_t i = 1; i < V; i++)
        if (p[i] > mx)
            mx = p[i];
    for (size_t i = 0; i < V; i++) {
        p[i] = exp_neg(p[i] - mx);
        sum += p[i];
    }
    for (size_t i = 0; i < V; i++)
        p[i] /= sum;
    if (s->top_p < 1.0f) {                            /* 4. top-p: the smallest set reaching p */
        sort_desc(p, m->order, m->order_tmp, V);
        const double limit = (double)s->top_p - 1e-9;
        double before = 0.0, kept = 0.0;
        for (size_t i = 0; i < V; i++) {
            const uint32_t id = m->order[i];
            const double pi = p[id];
            if (!(before < limit))
                p[id] = 0.0;
            before += pi;
            kept += p[id];
        }
        for (size_t i = 0; i < V; i++)
            p[i] /= kept;
    }
    /* one draw: the first id whose cumulative probability exceeds u = r * total */
    double total = 0.0;
    for (size_t i = 0; i < V; i++)
        total += p[i];
    const double u = tinylm_random(s) * total;
    double cdf = 0.0;
    size_t id = V - 1;
    for (size_t i = 0; i < V; i++) {
        cdf += p[i];
        if (cdf > u) {
            id = i;
            break;
        }
    }
    if (p[id] == 0.0)                                 /* rounding: never a zero-probability token */
        for (size_t i = V; i-- > 0;)
            if (p[i] != 0.0) {
                id = i;
                break;
            }
    return (int32_t)id;
}

/* ============================================================================================
 * generation (tinylm/generate.py generate, use_cache=True, one row)
 */

long tinylm_generate(tinylm_model *m, tinylm_sampler *s, int32_t *ids, size_t n_prompt, size_t n_new,
                     size_t capacity)
{
    if (!m || !s || !ids || n_prompt < 1 || n_prompt > capacity || n_new > capacity - n_prompt)
        return TINYLM_E_ARG;
    const size_t block = m->cfg.block_size, refill = block / 2 ? block / 2 : 1;
    for (size_t i = 0; i < n_prompt; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= m->cfg.vocab_size)
            return TINYLM_E_ARG;
    size_t len = n_prompt, cached = 0;
    for (size_t step = 0; step < n_new; step++) {
        const float *logits = NULL;
        if (step == 0 || cached == block) {           /* (re)start the cache from the last tokens */
            const size_t window = step == 0 ? block : refill;
            const size_t start = len > window ? len - window : 0;
            cached = 0;
            for (size_t t = start; t < len; t++)
                logits = tinylm_forward(m, ids[t], (uint32_t)cached++);
        } else {
            logits = tinylm_forward(m, ids[len - 1], (uint32_t)cached++);
        }
        if (!logits)
            return TINYLM_E_ARG;
        ids[len++] = tinylm_sample(m, s, logits);
    }
    return (long)len;
}

const char *tinylm_status_name(int status)
{
    switch (status) {
    case TINYLM_OK: return "ok";
    case TINYLM_E_ARG: return "bad argument";
    case TINYLM_E_TRUNCATED: return "the blob is truncated or an offset points past its end";
    case TINYLM_E_FORMAT: return "not a tinylm blob of a version this runtime reads";
    case TINYLM_E_CONFIG: return "the blob's config is out of range";
    case TINYLM_E_TOKENIZER: return "the blob's tokenizer tables are inconsistent";
    case TINYLM_E_TENSOR: return "the blob's tensor table is inconsistent";
    case TINYLM_E_ARENA: return "the arena is too small";
    case TINYLM_E_CAPACITY: return "the output buffer is too small";
    default: return "unknown status";
    }
}
