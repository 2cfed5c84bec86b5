/* main.c -- tinylm-run: generate text from an exported model.bin with no Python.
 *
 *     make -C runtime
 *     ./runtime/tinylm-run model.bin -n 200 -i "To be" [-t temperature] [-k top_k] [-p top_p] [-s seed]
 *
 * This program is the runtime's one user that may use stdio and malloc: it reads the file, asks the
 * runtime how big an arena the model needs, allocates it once, and hands both to tinylm_init.
 * Defaults: -n 200, -t 0.8, no top-k, no top-p, -s 0 (as `tinylm generate`). -t 0 is greedy.
 */
#define _POSIX_C_SOURCE 199309L   /* clock_gettime */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tinylm_runtime.h"

static void usage(void)
{
    fprintf(stderr, "usage: tinylm-run model.bin [-n new_tokens] [-i prompt] [-t temperature] [-k top_k] "
                    "[-p top_p] [-s seed]\n");
    exit(2);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The whole file in a buffer aligned to 16 bytes (the runtime checks the alignment). */
static uint8_t *read_file(const char *path, size_t *size, void **to_free)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tinylm-run: cannot open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if (fseek(f, 0, SEEK_END) != 0) { fprintf(stderr, "tinylm-run: cannot read %s\n", path); exit(1); }
    long n = ftell(f);
    if (n <= 0 || fseek(f, 0, SEEK_SET) != 0) { fprintf(stderr, "tinylm-run: %s is empty\n", path); exit(1); }
    uint8_t *raw = malloc((size_t)n + 16);
    if (!raw) { fprintf(stderr, "tinylm-run: out of memory for %ld bytes\n", n); exit(1); }
    uint8_t *buf = raw + (16 - (uintptr_t)raw % 16) % 16;
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "tinylm-run: cannot read %s\n", path); exit(1); }
    fclose(f);
    *size = (size_t)n;
    *to_free = raw;
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        usage();
    const char *path = argv[1], *prompt = "\n";
    long n_new = 200, top_k = 0;
    double temperature = 0.8, top_p = 1.0;
    unsigned long long seed = 0;
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc || argv[i][0] != '-' || strlen(argv[i]) != 2)
            usage();
        char *end = NULL;
        const char *v = argv[i + 1];
        switch (argv[i][1]) {
        case 'n': n_new = strtol(v, &end, 10); break;
        case 'i': prompt = v; end = (char *)v + strlen(v); break;
        case 't': temperature = strtod(v, &end); break;
        case 'k': top_k = strtol(v, &end, 10); break;
        case 'p': top_p = strtod(v, &end); break;
        case 's': seed = strtoull(v, &end, 10); break;
        default: usage();
        }
        if (!end || *end) {
            fprintf(stderr, "tinylm-run: %s %s is not a number\n", argv[i], v);
            return 2;
        }
    }
    if (n_new < 0 || top_k < 0 || !(temperature >= 0) || !(top_p > 0 && top_p <= 1) || !prompt[0]) {
        fprintf(stderr, "tinylm-run: expected -n >= 0, -k >= 0, -t >= 0, 0 < -p <= 1 and a non-empty -i\n");
        return 2;
    }

    size_t size;
    void *blob_mem;
    const uint8_t *blob = read_file(path, &size, &blob_mem);
    tinylm_config cfg;
    char msg[200];
    if (tinylm_validate(blob, size, &cfg, msg, sizeof msg) != TINYLM_OK) {
        fprintf(stderr, "tinylm-run: %s: %s\n", path, msg);
        return 1;
    }
    const size_t arena_bytes = tinylm_arena_bytes(&cfg);
    void *arena = malloc(arena_bytes);
    tinylm_model *m;
    if (!arena || tinylm_init(&m, blob, size, arena, arena_bytes, msg, sizeof msg) != TINYLM_OK) {
        fprintf(stderr, "tinylm-run: %s: %s\n", path, arena ? msg : "out of memory for the arena");
        return 1;
    }

    const size_t len = strlen(prompt), capacity = len + (size_t)n_new;
    int32_t *ids = malloc(capacity * sizeof(int32_t));
    if (!ids) { fprintf(stderr, "tinylm-run: out of memory\n"); return 1; }
    const long n_prompt = tinylm_encode(m, prompt, len, ids, capacity);
    tinylm_sampler s;
    if (n_prompt < 1 || tinylm_sampler_init(&s, (float)temperature, (uint32_t)top_k, (float)top_p, seed) != TINYLM_OK) {
        fprintf(stderr, "tinylm-run: cannot encode the prompt or set the sampler\n");
        return 1;
    }
    const double t0 = now();
    const clock_t c0 = clock();
    const long total = tinylm_generate(m, &s, ids, (size_t)n_prompt, (size_t)n_new, capacity);
    const double seconds = now() - t0, cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    if (total < 0) {
        fprintf(stderr, "tinylm-run: %s\n", tinylm_status_name((int)total));
        return 1;
    }
    fwrite(prompt, 1, len, stdout);
    for (long i = n_prompt; i < total; i++) {
        size_t n;
        const uint8_t *b = tinylm_token_bytes(m, ids[i], &n);
        if (b)
            fwrite(b, 1, n, stdout);
    }
    printf("\n");
    fprintf(stderr, "tinylm-run: %ld tokens in %.3f s, %.3f s of CPU (%.1f tokens/s; prompt %ld tokens; "
            "arena %zu bytes)\n", total - n_prompt, seconds, cpu,
            seconds > 0 ? (double)(total - n_prompt) / seconds : 0.0, n_prompt, arena_bytes);
    free(ids);
    free(arena);
    free(blob_mem);
    return 0;
}
