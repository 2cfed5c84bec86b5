/* count_funcs.c -- a QEMU TCG plugin that counts the guest instructions executed between two marker
 * functions, and how many of them ran inside given address ranges (the kernels), so a runtime's
 * overhead over its kernel calls can be measured exactly on an emulated Cortex-M.
 *
 *   qemu-system-arm ... -plugin ./libcount_funcs.so,begin=0x1234,end=0x1240,ranges=ranges.txt -d plugin
 *
 * begin/end: addresses of two empty functions of the guest (from arm-none-eabi-nm; the Thumb bit is
 * ignored); each begin..end span is one measurement (gen.c makes one per generated token).
 * ranges.txt: one "LO HI BUCKET" line per function (hex addresses, HI exclusive; BUCKET a small
 * number, e.g. one per kernel source file), taken from the link map by the Python side.
 * At exit, one line per span through QEMU's log (stderr):
 *     span TOTAL B0 B1 ... B(n-1)
 * TOTAL counts every instruction of the span, Bi the ones executed in the functions of bucket i.
 *
 * How: every translated block adds its length, at each execution, to `total` and (when the block
 * starts inside a listed function) to that function's bucket: inline adds, no callbacks. A block never
 * spans two functions (each ends in a branch or a return before the next one starts). The first
 * instruction of begin and of end gets a callback that takes a snapshot of the counters.
 * Like count_insns.c, a span includes the call of the end marker: a few instructions.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_RANGES 1024
#define MAX_BUCKETS 32
#define MAX_SPANS 4096

struct range { uint64_t lo, hi; int bucket; };

static uint64_t begin_addr, end_addr;      /* the marker functions */
static struct range ranges[MAX_RANGES];
static int n_ranges, n_buckets;

/* counters[0] is the total, counters[1 + b] bucket b's share; one vCPU, so plain integers */
static uint64_t counters[1 + MAX_BUCKETS];
static uint64_t at_begin[1 + MAX_BUCKETS];
static uint64_t spans[MAX_SPANS][1 + MAX_BUCKETS];
static int n_spans;

static void on_begin(unsigned int vcpu_index, void *udata)
{
    (void)vcpu_index, (void)udata;
    memcpy(at_begin, counters, sizeof counters);
}

static void on_end(unsigned int vcpu_index, void *udata)
{
    int i;
    (void)vcpu_index, (void)udata;
    if (n_spans >= MAX_SPANS)
        return;
    for (i = 0; i <= n_buckets; i++)
        spans[n_spans][i] = counters[i] - at_begin[i];
    n_spans++;
}

static int bucket_of(uint64_t pc)
{
    int i;
    for (i = 0; i < n_ranges; i++)
        if (pc >= ranges[i].lo && pc < ranges[i].hi)
            return ranges[i].bucket;
    return -1;
}

static void on_tb_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    int bucket = bucket_of(qemu_plugin_tb_vaddr(tb));
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counters[0], n);
    if (bucket >= 0)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counters[1 + bucket], n);
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        if (pc == begin_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
        else if (pc == end_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *udata)
{
    char line[32 * (2 + MAX_BUCKETS)];
    int s, i, len;
    (void)id, (void)udata;
    for (s = 0; s < n_spans; s++) {
        len = snprintf(line, sizeof line, "span");
        for (i = 0; i <= n_buckets; i++)
            len += snprintf(line + len, sizeof line - (size_t)len, " %" PRIu64, spans[s][i]);
        snprintf(line + len, sizeof line - (size_t)len, "\n");
        qemu_plugin_outs(line);
    }
}

static int read_ranges(const char *path)
{
    unsigned long long lo, hi;
    int bucket;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "count_funcs: cannot open %s\n", path);
        return -1;
    }
    while (fscanf(f, "%llx %llx %d", &lo, &hi, &bucket) == 3) {
        if (n_ranges == MAX_RANGES || bucket < 0 || bucket >= MAX_BUCKETS) {
            fprintf(stderr, "count_funcs: %s: more than %d ranges or a bucket outside 0..%d\n", path,
                    MAX_RANGES, MAX_BUCKETS - 1);
            fclose(f);
            return -1;
        }
        ranges[n_ranges].lo = lo & ~1ull;   /* drop the Thumb bit */
        ranges[n_ranges].hi = hi;
        ranges[n_ranges].bucket = bucket;
        n_ranges++;
        if (bucket + 1 > n_buckets)
            n_buckets = bucket + 1;
    }
    fclose(f);
    return 0;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc; i++) {
        if (strncmp(argv[i], "begin=", 6) == 0)
            begin_addr = strtoull(argv[i] + 6, NULL, 0) & ~1ull;
        else if (strncmp(argv[i], "end=", 4) == 0)
            end_addr = strtoull(argv[i] + 4, NULL, 0) & ~1ull;
        else if (strncmp(argv[i], "ranges=", 7) == 0 && read_ranges(argv[i] + 7) != 0)
            return -1;
    }
    if (!begin_addr || !end_addr) {
        fprintf(stderr, "count_funcs: expected arguments begin=ADDR,end=ADDR[,ranges=FILE]\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_translate);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
