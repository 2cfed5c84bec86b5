/* hello.c -- the smallest proof that the startup, linker script and semihosting work:
 * prints a line and returns 42, which must become qemu-system-arm's own exit status. */
#include <stdio.h>

int main(void)
{
    printf("hello from a Cortex-M\n");
    return 42;
}
