/* tinylm_runtime.h -- run an exported tinylm model in plain C: one blob, one arena, no malloc.
 *
 * How a program uses it (runtime/main.c is the complete example):
 *
 *     const uint8_t *blob = ...;  size_t size = ...;        // model.bin read into memory, or the const
 *                                                           // array of model_data.c (in flash)
 *     tinylm_config cfg;  char msg[160];
 *     if (tinylm_validate(blob, size, &cfg, msg, sizeof msg) != TINYLM_OK) { puts(msg); return 1; }
 *     size_t need = tinylm_arena_bytes(&cfg);               // KV cache + activations + scratch
 *     void *arena = ...a buffer of `need` bytes (static array, stack, malloc: the caller's choice)...;
 *     tinylm_model *m;
 *     if (tinylm_init(&m, blob, size, arena, need, msg, sizeof msg) != TINYLM_OK) { ... }
 *     int32_t ids[256];
 *     long n = tinylm_encode(m, "To be", 5, ids, 256);       // byte-level BPE, as tinylm.Tokenizer
 *     tinylm_sampler s;  tinylm_sampler_init(&s, 0.8f, 40, 0.95f, 1234);   // temperature 0 = greedy
 *     long total = tinylm_generate(m, &s, ids, (size_t)n, 100, 256);       // ids[n .. total-1] are new
 *     for (long i = n; i < total; i++) { size_t len; const uint8_t *b = tinylm_token_bytes(m, ids[i], &len); ... }
 *
 * The runtime never allocates, keeps no global state, does no I/O and needs no libm: the same file
 * builds for a PC and for a Cortex-M (-std=c99, arm-none-eabi-gcc). It reads the blob in place (the
 * weights are used where they lie: flash on a board) and trusts nothing in it: tinylm_validate checks
 * every field, offset, size, count, tag and alignment before any weight is touched, so a corrupt or
 * truncated blob is an error code and a message, never a crash or an out-of-bounds read.
 * The blob must start at a 16-byte-aligned address and the host must be little-endian (both checked).
 *
 * ============================================================================================
 * THE BLOB FORMAT (model.bin), versions 1 and 2. Written by tinylm/io/cblob.py, read by tinylm_runtime.c.
 * Version 2 = version 1 + the int4 tensor dtype (3); nothing else differs. The writer writes version 1
 * when no tensor is int4 (so a version-1 reader still runs every fp32/fp16/int8 blob) and version 2
 * otherwise (a version-1 reader refuses it by its version: TINYLM_E_FORMAT). This reader reads both;
 * an int4 tag in a version-1 blob is refused as a bad precision tag.
 * Little-endian; u32 = uint32, f32 = IEEE binary32; every section starts at a multiple of 16 bytes
 * (zero padding in between); offsets are from the start of the blob.
 *
 * Header (128 bytes at offset 0):
 *   0  char magic[4] = "TLMB"       4  u32 version (1|2)      8  u32 header_bytes = 128
 *  12  u32 blob_bytes (the whole blob)
 *  16  u32 vocab_size   20 u32 block_size   24 u32 n_layer   28 u32 n_head   32 u32 n_embd
 *  36  u32 n_expert (0 = dense MLP)         40 u32 expert_top_k (1..n_expert; ignored when dense)
 *  44  u32 flags (bit 0: Linear and LayerNorm layers have biases; other bits 0)
 *  48  f32 ln_eps (LayerNorm epsilon, 1e-5)
 *  52  u32 tok_offset   56 u32 tok_bytes     the tokenizer section
 *  60  u32 n_tensors    64 u32 table_offset  the tensor table
 *  68..127 zero (reserved; a reader rejects anything else)
 *
 * Tokenizer section (at tok_offset; its own 32-byte header, then arrays of u32, then bytes):
 *   0 u32 n_tokens (ids 0..n_tokens-1; n_tokens <= vocab_size)   4 u32 n_merges
 *   8 u32 pattern: the pre-split regex of the Python tokenizer. 0 = none (the whole text is one chunk),
 *     1 = tinylm.tokenizer.GPT2_PATTERN, 2 = GPT4_PATTERN (GPT-4's cl100k). Other regexes cannot be
 *     exported. tinylm_runtime.c implements 1 and 2 by hand, alternative by alternative.
 *  12 u32 n_ranges   16 u32 pool_bytes   20..31 zero
 *  32 u32 byte_ids[256]            the id of each byte value (ids 0..255 for tinylm-trained vocabularies)
 *     u32 token_start[n_tokens+1]  token i is pool[token_start[i] .. token_start[i+1]); empty = unused id
 *     u32 merges[n_merges][3]      (left, right, new_id) in rank order: rank 0 is merged first
 *     u32 pair_index[n_merges]     the ranks sorted by (left, right), strictly increasing: binary search
 *     u32 ranges[n_ranges][2]      Unicode classes for the pre-split: (lo, hi | class << 24), code points
 *                                  lo..hi inclusive; class bits 1 = \p{L}, 2 = \p{N}, 4 = \s, as the
 *                                  Python `regex` module that wrote the blob defines them; sorted, disjoint
 *     u8  pool[pool_bytes]         the bytes of every token (special tokens: their UTF-8 text)
 *
 * Tensor table (at table_offset): n_tensors entries of 12 u32 (48 bytes):
 *   0 kind (TINYLM_T_*, below)  1 layer  2 expert  3 dtype (0 fp32, 1 fp16, 2 int8, 3 int4: version 2)
 *   4 group_size (int8: columns per scale, dividing cols, <= 133144; int4: the same, and a multiple of
 *     32 (cols then too); == cols is per channel; fp32/fp16: 0)
 *   5 rows  6 cols (a vector has rows = 1)    7 data_offset
 *   8 data_bytes (rows*cols*(4|2|1); int4: rows*cols/2, two values a byte)
 *   9 scale_offset 10 scale_bytes (int8, int4: rows*(cols/group_size) f32 scales; else 0, 0)  11 zero
 *   Entries are sorted by (kind, layer, expert), strictly increasing (so none repeats, checked in one
 *   pass); every tensor the config needs appears exactly once, with the shape below; LayerNorm
 *   weights and all biases are fp32; int8 values are in [-127, 127] (checked); fp16 is IEEE binary16;
 *   int4 rows are Q4_0's packing (kernels/tinylm_kernels.h, "int4 linear layer": byte j of each
 *   16-byte block holds column j in its low nibble and j + 16 in its high nibble, two's complement)
 *   with values in [-7, 7] (a nibble 0x8, -8, is refused); an int4 Linear multiplies with
 *   tinylm_linear_s4 (activations quantized to int8 per row and group, as tinylm.quant.Int4Weight),
 *   an int4 embedding row is tinylm_dequantize_s4 of that row.
 *   The output head is the token embedding (tied, one matrix): TINYLM_T_WTE serves both.
 * ============================================================================================
 */
#ifndef TINYLM_RUNTIME_H
#define TINYLM_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

/* cffi-begin: the declarations between these markers are also read by kernels/build.py */

/* the newest blob version this reader reads (it reads 1 and 2) */
#define TINYLM_BLOB_VERSION 2
#define TINYLM_BLOB_ALIGN 16

/* status codes: every function that can fail returns one (0 = success) */
enum {
    TINYLM_OK = 0,
    TINYLM_E_ARG = -1,        /* a NULL pointer, a bad size or option from the caller */
    TINYLM_E_TRUNCATED = -2,  /* the blob is shorter than its header or a section says */
    TINYLM_E_FORMAT = -3,     /* not a tinylm blob (magic), or a version / header this reader does not know */
    TINYLM_E_CONFIG = -4,     /* a config value out of range or inconsistent */
    TINYLM_E_TOKENIZER = -5,  /* a tokenizer table out of range or inconsistent */
    TINYLM_E_TENSOR = -6,     /* a tensor missing, duplicated, misplaced or of the wrong shape / tag */
    TINYLM_E_ARENA = -7,      /* the arena is smaller than tinylm_arena_bytes() */
    TINYLM_E_CAPACITY = -8    /* an output buffer is too small */
};

/* tensor kinds in the table (layer / expert say where; router and experts exist when n_expert > 0) */
enum {
    TINYLM_T_WTE = 1,        /* (vocab_size, n_embd) token embedding = output head               */
    TINYLM_T_WPE = 2,        /* (block_size, n_embd) position embedding                          */
    TINYLM_T_LNF_W = 3,      /* (1, n_embd) final LayerNorm weight, fp32                          */
    TINYLM_T_LNF_B = 4,      /* (1, n_embd) its bias (when flags bit 0)                           */
    TINYLM_T_LN1_W = 5, TINYLM_T_LN1_B = 6,             /* per layer, (1, n_embd), fp32          */
    TINYLM_T_ATTN_W = 7,     /* (3 n_embd, n_embd) c_attn: q, k, v rows                           */
    TINYLM_T_ATTN_B = 8,     /* (1, 3 n_embd)                                                     */
    TINYLM_T_ATTN_PROJ_W = 9, TINYLM_T_ATTN_PROJ_B = 10, /* (n_embd, n_embd), (1, n_embd)         */
    TINYLM_T_LN2_W = 11, TINYLM_T_LN2_B = 12,
    TINYLM_T_FC_W = 13, TINYLM_T_FC_B = 14,             /* (4 n_embd, n_embd), (1, 4 n_embd); per expert */
    TINYLM_T_MLP_PROJ_W = 15, TINYLM_T_MLP_PROJ_B = 16, /* (n_embd, 4 n_embd), (1, n_embd); per expert */
    TINYLM_T_ROUTER_W = 17   /* (n_expert, n_embd), no bias                                        */
};

enum { TINYLM_DTYPE_F32 = 0, TINYLM_DTYPE_F16 = 1, TINYLM_DTYPE_S8 = 2, TINYLM_DTYPE_S4 = 3 /* version 2 */ };

/* The model's sizes, as tinylm.model.GPTConfig names them (filled by tinylm_validate). */
typedef struct {
    uint32_t vocab_size, block_size, n_layer, n_head, n_embd;
    uint32_t n_expert, expert_top_k;  /* n_expert 0: dense MLP */
    uint32_t bias;                    /* 1: Linear and LayerNorm layers have biases */
    float ln_eps;
    uint32_t n_tokens;                /* ids the tokenizer defines (<= vocab_size) */
    uint32_t pattern;                 /* 0 none, 1 gpt2, 2 gpt4 */
} tinylm_config;

/* A model ready to run: lives at the start of the caller's arena (opaque). */
typedef struct tinylm_model tinylm_model;

/* Sampling settings and the PRNG state. The PRNG is xorshift64* (Vigna 2016), seeded through
 * splitmix64 so that every seed, 0 included, gives a non-zero state:
 *     state = splitmix64(seed) (0 -> 1);  next: x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
 *     out = x * 0x2545F4914F6CDD1D;  uniform double in [0, 1) = (out >> 11) * 2^-53.
 * tinylm.generate.TinyRNG is the same generator, so a seeded run picks the same tokens in both. */
typedef struct {
    float temperature;   /* 0: greedy (argmax, first on ties) */
    uint32_t top_k;      /* 0: off */
    float top_p;         /* >= 1: off; else keep the smallest most-likely set whose mass reaches top_p */
    uint64_t state;
} tinylm_sampler;

/* Check a blob completely and fill *cfg. On error: the status, and a message naming the problem
 * in msg (always NUL-terminated when msg_size > 0). Touches nothing outside blob[0 .. size). */
int tinylm_validate(const uint8_t *blob, size_t size, tinylm_config *cfg, char *msg, size_t msg_size);

/* Bytes of arena a model of this config needs (the model struct, KV cache, activations, scratch,
 * plus 16 bytes of alignment slack); 0 when the sizes overflow size_t. */
size_t tinylm_arena_bytes(const tinylm_config *cfg);

/* Validate the blob and lay the model out in the arena; *model points into the arena. The blob and
 * the arena must stay alive (and unchanged) while the model is used. */
int tinylm_init(tinylm_model **model, const uint8_t *blob, size_t size, void *arena, size_t arena_size,
                char *msg, size_t msg_size);

/* The config of an initialised model. */
const tinylm_config *tinylm_model_config(const tinylm_model *m);

/* One forward step: token `token` at position `pos` (0 <= pos < block_size), with the KV cache
 * holding positions 0 .. pos-1 from earlier calls. Returns the logits (vocab_size floats, inside
 * the arena, valid until the next call), or NULL when token or pos is out of range. */
const float *tinylm_forward(tinylm_model *m, int32_t token, uint32_t pos);

/* Byte-level BPE encode of `len` bytes of UTF-8 text, exactly as tinylm.Tokenizer.encode_ordinary
 * (special-token strings are ordinary text): tinylm_bpe_encode (below) on the blob's tables, with no
 * work memory. Writes at most `capacity` ids; returns the number of ids, or TINYLM_E_CAPACITY when
 * they do not fit (capacity >= len always suffices). Chunks longer than 64 bytes cost
 * O(chunk length^2 log n_merges) here (no work memory); shorter ones O(length * merges * log n_merges). */
long tinylm_encode(const tinylm_model *m, const char *text, size_t len, int32_t *ids, size_t capacity);

/* ---- the BPE encoder on its own: the one C implementation behind tinylm_encode and tinylm.Tokenizer
 *
 * A tinylm_bpe points at the tokenizer's tables (laid out as in the blob's tokenizer section, see
 * the top of this file); the runtime points it into the blob, tinylm.tokenizer at NumPy arrays it
 * builds from its own lists. The tables must be consistent (tinylm_validate checks a blob's; a
 * tinylm.Tokenizer checks its own): the encoder trusts them. Set the pointers and counts, leave
 * pair_hash NULL, then call tinylm_bpe_init; tinylm_bpe_hash optionally adds a hash table of the
 * merges (faster than the binary search of pair_index; 4 bytes per slot, slots >= 2 n_merges). */
typedef struct {
    const uint32_t *byte_ids;     /* (256,) the id of each byte value */
    const uint32_t *merges;       /* (n_merges, 3) (left, right, new_id) in rank order */
    const uint32_t *pair_index;   /* (n_merges,) the ranks sorted by (left, right), strictly increasing */
    const uint32_t *ranges;       /* (n_ranges, 2) Unicode classes (lo, hi | class << 24), as in the blob */
    const uint32_t *pair_hash;    /* NULL, or (2^hash_bits,) ranks, set by tinylm_bpe_hash */
    uint32_t n_merges, n_ranges;
    uint32_t pattern;             /* 0 none, 1 GPT-2's, 2 GPT-4's (tinylm.tokenizer.GPT2_PATTERN, GPT4_PATTERN) */
    uint32_t hash_bits;
    uint8_t ascii_class[128];     /* the class bits of each ASCII character, filled by tinylm_bpe_init */
} tinylm_bpe;

/* Fill bpe->ascii_class from bpe->ranges. */
void tinylm_bpe_init(tinylm_bpe *bpe);

/* The pre-split on its own: the end of the chunk that starts at byte i of text[0 .. len) (len when
 * i >= len). tinylm_bpe_encode calls it chunk after chunk from i = 0. */
size_t tinylm_bpe_chunk_end(const tinylm_bpe *bpe, const uint8_t *text, size_t len, size_t i);

/* Fill slots[0 .. 2^hash_bits) with a hash table of the merges (linear probing, UINT32_MAX = empty)
 * and attach it to bpe. TINYLM_E_ARG unless 1 <= hash_bits <= 31 and 2^hash_bits >= 2 n_merges. */
int tinylm_bpe_hash(tinylm_bpe *bpe, uint32_t *slots, uint32_t hash_bits);

/* Words of work memory with which tinylm_bpe_encode merges any chunk of up to `len` bytes in
 * O(n log n) (2P + 2 len, P the power of two >= len); 0 when len >= 2^30. */
size_t tinylm_bpe_work_words(size_t len);

/* Encode `len` bytes of UTF-8 text: the pre-split of bpe->pattern, implemented by hand for GPT-2's
 * and GPT-4's regexes, alternative by alternative (tests compare them with the `regex` module on
 * real, random and adversarial text); then, per chunk, the lowest-ranked adjacent pair (leftmost on
 * ties) merged until none is a merge. An invalid UTF-8 byte counts as one character of no class
 * (Python's str never holds one). Writes at most `capacity` ids (capacity >= len suffices); returns
 * their number, TINYLM_E_CAPACITY when they do not fit, or TINYLM_E_ARG. `work` (work_words u32,
 * may be NULL with 0): with tinylm_bpe_work_words(len) words every chunk merges in O(n log n);
 * with less, chunks longer than 64 bytes that do not fit are merged in O(n^2) lookups instead
 * (same ids). No allocation, no globals: threads may share one bpe. */
long tinylm_bpe_encode(const tinylm_bpe *bpe, const uint8_t *text, size_t len, int32_t *ids, size_t capacity,
                       uint32_t *work, size_t work_words);

/* The bytes of token `id` (*len of them; not NUL-terminated), or NULL with *len = 0 for an id the
 * tokenizer does not define. A token may hold part of a UTF-8 character. */
const uint8_t *tinylm_token_bytes(const tinylm_model *m, int32_t id, size_t *len);

/* Sampler: temperature >= 0, top_p in (0, 1] (>= 1 is off), top_k 0 = off. TINYLM_E_ARG otherwise. */
int tinylm_sampler_init(tinylm_sampler *s, float temperature, uint32_t top_k, float top_p, uint64_t seed);
double tinylm_random(tinylm_sampler *s);    /* the next uniform double in [0, 1) */
/* Pick a token from logits (vocab_size floats) as tinylm.generate.sample_next does, in double
 * precision like NumPy: temperature, then top-k (ties to the lower id), softmax, top-p, then one draw
 * u = tinylm_random() * total, and the first id whose cumulative probability exceeds u. Greedy
 * (temperature 0) takes the first maximum and draws nothing. */
int32_t tinylm_sample(tinylm_model *m, tinylm_sampler *s, const float *logits);

/* Continue ids[0 .. n_prompt-1] by n_new tokens, as tinylm.generate.generate(use_cache=True) does
 * (the first step feeds the last block_size prompt tokens; a full cache restarts from the last
 * block_size/2 tokens). ids has room for `capacity` ids. Returns n_prompt + n_new, or a status < 0. */
long tinylm_generate(tinylm_model *m, tinylm_sampler *s, int32_t *ids, size_t n_prompt, size_t n_new,
                     size_t capacity);

/* The message of a status code, e.g. "the blob is truncated". */
const char *tinylm_status_name(int status);

/* cffi-end */

#endif /* TINYLM_RUNTIME_H */
