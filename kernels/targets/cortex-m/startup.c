/* startup.c -- what runs before main() on a bare Cortex-M, for the emulated MPS2/MPS3 boards.
 *
 * A Cortex-M boots by reading two words at address 0: the initial stack pointer and the address of
 * the reset handler. There is no OS and no loader, so the reset handler does by hand what a PC's
 * C runtime does for free:
 *   1. turn on the FPU (and, on the M55, the MVE vector unit: the same CPACR bits),
 *   2. copy initialised globals (.data) from flash to RAM and zero the rest (.bss),
 *   3. open the semihosting channel, so printf reaches the host (QEMU's stdout),
 *   4. run constructors, then exit(main()): newlib turns exit(code) into a semihosting call and
 *      QEMU exits with that status, so a test program's return value reaches the shell.
 * The section addresses (_sidata, _sdata, ...) come from link.ld.
 */
#include <stdint.h>
#include <stdlib.h>

int main(void);
void initialise_monitor_handles(void);   /* newlib's librdimon: semihosting stdin/stdout/stderr */
void __libc_init_array(void);

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];

/* newlib's __libc_init_array calls _init/_fini from crti.o, which -nostartfiles leaves out. */
void _init(void) {}
void _fini(void) {}

#define CPACR (*(volatile uint32_t *)0xE000ED88u)   /* Coprocessor Access Control Register */

void Reset_Handler(void)
{
    uint32_t *src, *dst;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    CPACR |= 0xFu << 20;                  /* full access to CP10 and CP11 (FPU, and MVE on M55) */
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    for (src = _sidata, dst = _sdata; dst < _edata;)
        *dst++ = *src++;
    for (dst = _sbss; dst < _ebss;)
        *dst++ = 0u;
    initialise_monitor_handles();
    __libc_init_array();
    exit(main());
}

/* Any fault ends the run with status 3 (semihosting still works in a fault handler). */
void Fault_Handler(void)
{
    exit(3);
}

/* The vector table: initial stack pointer, reset, NMI, HardFault, MemManage, BusFault, UsageFault.
 * The interrupts after these are never enabled by the test programs. */
__attribute__((section(".vectors"), used))
static void (*const vector_table[7])(void) = {
    (void (*)(void))_estack, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler,
};
