/* count_insns.c -- a QEMU TCG plugin that counts the guest instructions executed between two marker
 * functions, so a kernel's cost on an emulated Cortex-M can be measured exactly (QEMU has no cycle
 * model; an instruction count is exact and the same on every run).
 *
 *   qemu-system-arm ... -plugin ./libcount_insns.so,begin=0x1234,end=0x1240 -d plugin
 *
 * begin/end are the addresses of two empty functions in the guest program (from arm-none-eabi-nm;
 * the Thumb bit is ignored). The guest calls begin(), the kernel, end(); each begin..end span is
 * one measurement, printed at exit as "count N" lines, in order, through QEMU's log (stderr).
 *
 * How: every translated block adds its length to `total` when it runs (an inline add, cheap); the
 * first instruction of begin and of end gets a callback that reads `total`. A span therefore holds
 * the instructions from just after begin's first instruction to end's first instruction inclusive:
 * the caller's call sequence is in it, which the benchmark measures with an empty span and removes.
 * Built against qemu-plugin.h of the QEMU source (the header is not installed by Debian's QEMU).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_SPANS 256

static uint64_t begin_addr, end_addr;   /* the marker functions */
static uint64_t total;                  /* instructions executed so far (one vCPU) */
static uint64_t span_start;
static uint64_t spans[MAX_SPANS];
static int n_spans;

static void on_begin(unsigned int vcpu_index, void *udata)
{
    (void)vcpu_index, (void)udata;
    span_start = total;
}

static void on_end(unsigned int vcpu_index, void *udata)
{
    (void)vcpu_index, (void)udata;
    if (n_spans < MAX_SPANS)
        spans[n_spans++] = total - span_start;
}

/* Called once per translated block: count its instructions at every execution, and hook the
 * markers' first instructions. */
static void on_tb_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
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
    char line[64];
    int i;
    (void)id, (void)udata;
    for (i = 0; i < n_spans; i++) {
        snprintf(line, sizeof line, "count %" PRIu64 "\n", spans[i]);
        qemu_plugin_outs(line);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc; i++) {
        if (strncmp(argv[i], "begin=", 6) == 0)
            begin_addr = strtoull(argv[i] + 6, NULL, 0) & ~1ull;   /* drop the Thumb bit */
        else if (strncmp(argv[i], "end=", 4) == 0)
            end_addr = strtoull(argv[i] + 4, NULL, 0) & ~1ull;
    }
    if (!begin_addr || !end_addr) {
        fprintf(stderr, "count_insns: expected arguments begin=ADDR,end=ADDR\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_translate);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
