/* fuzz_blob.c -- feed the C runtime's blob loader mutated blobs; build it with ASan + UBSan.
 *
 *     cc -std=c99 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
 *        -Iruntime -Ikernels tests/c/fuzz_blob.c runtime/tinylm_runtime.c kernels/<every>.c -o fuzz_blob
 *     ./fuzz_blob model.bin [iterations]
 *
 * Every mutated blob lives in a heap block of exactly its size (posix_memalign, 16-byte aligned), so
 * a read one byte past its end is an AddressSanitizer error, and any undefined behaviour is a UBSan
 * error: either aborts the program. Four families of mutations:
 *   1. truncation at every length 0 .. size-1: each must be refused (status < 0);
 *   2. every 32-bit word of the header, the tokenizer header and the tensor table set to hostile
 *      values (0, 1, 15, 0x7fffffff, 0x80000000, 0xffffffff, size, size - 1, size + 16);
 *   3. random byte flips (1 to 8 bytes, anywhere; a deterministic xorshift stream);
 *   4. every tensor's precision tag (0..4: fp32, fp16, int8, int4, none) crossed with group sizes
 *      (0, 8, 16, 32, 48, 64), sizes unchanged: an int8 tensor retagged int4 has twice the bytes,
 *      an int4 tensor retagged int8 half, a group of 16 is no int4 group, and so on.
 * A mutated blob that still validates is then run: init, a forward pass per position, encode of a
 * text with every kind of character, sampling with top-k/top-p: it must not crash either.
 * Prints how many blobs were refused with each status and how many ran.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinylm_runtime.h"

static long counts[16];
static long ran;

static uint8_t *copy_of(const uint8_t *src, size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 16, n ? n : 1) != 0) {
        fprintf(stderr, "fuzz_blob: out of memory\n");
        exit(1);
    }
    if (n)
        memcpy(p, src, n);
    return p;
}

/* Validate (and, when valid, run) one blob held in a block of exactly n bytes. */
static int try_blob(const uint8_t *blob, size_t n)
{
    tinylm_config cfg;
    char msg[160];
    int st = tinylm_validate(blob, n, &cfg, msg, sizeof msg);
    if (st != TINYLM_OK) {
        if (st >= 0 || msg[0] == '\0') {
            fprintf(stderr, "fuzz_blob: refused with status %d and no message\n", st);
            exit(1);
        }
        counts[-st]++;
        return st;
    }
    const size_t need = tinylm_arena_bytes(&cfg);
    if (need > ((size_t)1 << 28))
        return 0;                                 /* valid but too big to run here: fine */
    void *arena = malloc(need);
    tinylm_model *m;
    if (!arena || tinylm_init(&m, blob, n, arena, need, msg, sizeof msg) != TINYLM_OK) {
        fprintf(stderr, "fuzz_blob: validated but init failed: %s\n", msg);
        exit(1);
    }
    if (tinylm_init(&m, blob, n, arena, need - 1, msg, sizeof msg) != TINYLM_E_ARENA) {
        fprintf(stderr, "fuzz_blob: an arena one byte short was accepted\n");
        exit(1);
    }
    if (tinylm_init(&m, blob, n, arena, need, msg, sizeof msg) != TINYLM_OK)
        exit(1);
    static const char text[] = "Hello, world!  It's 12345 o'clock\r\n\t\xe6\x88\x91\xe5\x96\x9c AI \xf0\x9f\xa4\x96 \xff\xfe end";
    int32_t ids[128];
    long k = tinylm_encode(m, text, sizeof text - 1, ids, 128);
    if (k < 1) {
        fprintf(stderr, "fuzz_blob: encode failed on a valid blob\n");
        exit(1);
    }
    for (long i = 0; i < k; i++) {
        size_t len;
        (void)tinylm_token_bytes(m, ids[i], &len);
    }
    tinylm_sampler s;
    tinylm_sampler_init(&s, 0.9f, 5, 0.9f, 42);
    for (uint32_t pos = 0; pos < cfg.block_size && pos < 8; pos++) {
        const float *logits = tinylm_forward(m, ids[pos % (uint32_t)k] % (int32_t)cfg.vocab_size, pos);
        if (!logits)
            exit(1);
        (void)tinylm_sample(m, &s, logits);
    }
    ids[0] = 0;
    if (tinylm_generate(m, &s, ids, 1, 20, 128) != 21)
        exit(1);
    free(arena);
    ran++;
    return 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz_blob model.bin [iterations]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    static uint8_t file[1 << 24];
    const size_t size = fread(file, 1, sizeof file, f);
    fclose(f);
    const long iterations = argc > 2 ? atol(argv[2]) : 2000;

    uint8_t *b = copy_of(file, size);
    if (try_blob(b, size) != 0) {
        fprintf(stderr, "fuzz_blob: the unmutated blob does not validate\n");
        return 1;
    }
    free(b);

    /* 1. every truncation */
    for (size_t n = 0; n < size; n++) {
        b = copy_of(file, n);
        if (try_blob(b, n) == 0) {
            fprintf(stderr, "fuzz_blob: a blob truncated to %zu bytes was accepted\n", n);
            return 1;
        }
        free(b);
    }
    long truncations = (long)size;

    /* 2. hostile values in every word of the header, the tokenizer header and the tensor table */
    const uint32_t tok = get32(file + 52), table = get32(file + 64), n_tensors = get32(file + 60);
    const uint32_t hostile[] = {0, 1, 15, 0x7fffffffu, 0x80000000u, 0xffffffffu, (uint32_t)size,
                                (uint32_t)size - 1, (uint32_t)size + 16};
    size_t words[4096];
    size_t n_words = 0;
    for (size_t w = 0; w < 128; w += 4) words[n_words++] = w;
    for (size_t w = 0; w < 32; w += 4) words[n_words++] = tok + w;
    for (size_t w = 0; w < (size_t)n_tensors * 48 && n_words < 4096; w += 4) words[n_words++] = table + w;
    long hostile_runs = 0;
    for (size_t i = 0; i < n_words; i++)
        for (size_t h = 0; h < sizeof hostile / sizeof hostile[0]; h++) {
            b = copy_of(file, size);
            memcpy(b + words[i], &hostile[h], 4);
            try_blob(b, size);
            free(b);
            hostile_runs++;
        }

    /* 3. random byte flips */
    for (long it = 0; it < iterations; it++) {
        b = copy_of(file, size);
        const int flips = 1 + (int)(next_rand() % 8);
        for (int j = 0; j < flips; j++)
            b[next_rand() % size] ^= (uint8_t)(1 + next_rand() % 255);
        try_blob(b, size);
        free(b);
    }
    /* 4. precision tags crossed with group sizes */
    const uint32_t groups[] = {0, 8, 16, 32, 48, 64};
    long retags = 0;
    for (uint32_t i = 0; i < n_tensors && (uint64_t)table + 48u * (i + 1u) <= size; i++)
        for (uint32_t dtype = 0; dtype <= 4; dtype++)
            for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
                b = copy_of(file, size);
                memcpy(b + table + 48u * i + 12u, &dtype, 4);
                memcpy(b + table + 48u * i + 16u, &groups[g], 4);
                try_blob(b, size);
                free(b);
                retags++;
            }
    printf("fuzz_blob: %zu-byte blob; %ld truncations, %ld hostile words, %ld random flips, %ld retags: 0 crashes\n",
           size, truncations, hostile_runs, iterations, retags);
    printf("refused: truncated %ld, format %ld, config %ld, tokenizer %ld, tensor %ld, arg %ld; ran %ld\n",
           counts[2], counts[3], counts[4], counts[5], counts[6], counts[1], ran);
    return 0;
}
