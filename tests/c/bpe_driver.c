/* bpe_driver.c -- tinylm_bpe_encode under the sanitizers (tests/test_tokenizer_c.py builds and runs it).
 *
 *     bpe_driver TABLES TEXT
 *
 * TABLES: u32 pattern, n_merges, n_ranges; u32 byte_ids[256]; u32 merges[n_merges][3];
 * u32 pair_index[n_merges]; u32 ranges[n_ranges][2] (little-endian, as tinylm/bpe/native.py builds them).
 * TEXT: any bytes (invalid UTF-8 included). Encodes the text four ways -- hash table or binary search,
 * with work memory or without -- and prints the ids once, space-separated, when all four agree;
 * exits 1 when they do not. Test code: it may allocate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinylm_runtime.h"

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(n > 0 ? (size_t)n : 1u);
    *size = data && n >= 0 ? fread(data, 1, (size_t)n, f) : 0;
    fclose(f);
    return data;
}

int main(int argc, char **argv)
{
    size_t tsize = 0, len = 0;
    unsigned char *tables = argc == 3 ? read_file(argv[1], &tsize) : NULL;
    unsigned char *text = argc == 3 ? read_file(argv[2], &len) : NULL;
    if (!tables || !text || tsize < 12 + 1024) {
        fprintf(stderr, "usage: bpe_driver TABLES TEXT\n");
        return 2;
    }
    uint32_t *words = malloc(tsize);                  /* aligned copy of the tables */
    memcpy(words, tables, tsize);
    tinylm_bpe bpe;
    memset(&bpe, 0, sizeof bpe);
    bpe.pattern = words[0];
    bpe.n_merges = words[1];
    bpe.n_ranges = words[2];
    bpe.byte_ids = words + 3;
    bpe.merges = bpe.byte_ids + 256;
    bpe.pair_index = bpe.merges + 3u * bpe.n_merges;
    bpe.ranges = bpe.pair_index + bpe.n_merges;
    if ((size_t)(bpe.ranges + 2u * bpe.n_ranges - words) * 4u != tsize) {
        fprintf(stderr, "bpe_driver: the tables file has the wrong size\n");
        return 2;
    }
    tinylm_bpe_init(&bpe);
    uint32_t bits = 1;
    while ((1ull << bits) < 2ull * bpe.n_merges)
        bits++;
    uint32_t *slots = malloc(sizeof(uint32_t) << bits);
    const size_t work_words = tinylm_bpe_work_words(len);
    uint32_t *work = malloc((work_words + 1) * sizeof(uint32_t));
    int32_t *ids[4];
    long n[4];
    for (int v = 0; v < 4; v++) {
        bpe.pair_hash = NULL;
        if (v & 1 && tinylm_bpe_hash(&bpe, slots, bits) != TINYLM_OK)
            return 2;
        ids[v] = malloc((len + 1) * sizeof(int32_t));     /* exactly len ids of room: ASan sees overruns */
        n[v] = tinylm_bpe_encode(&bpe, text, len, ids[v], len, v & 2 ? work : NULL, v & 2 ? work_words : 0);
        if (n[v] < 0 || n[v] > (long)len || n[v] != n[0] || memcmp(ids[v], ids[0], (size_t)n[0] * 4u)) {
            fprintf(stderr, "bpe_driver: variant %d gives other ids (%ld vs %ld)\n", v, n[v], n[0]);
            return 1;
        }
    }
    for (long i = 0; i < n[0]; i++)
        printf(i ? " %d" : "%d", (int)ids[0][i]);
    printf("\n");
    for (int v = 0; v < 4; v++)
        free(ids[v]);
    free(work);
    free(slots);
    free(words);
    free(tables);
    free(text);
    return 0;
}
