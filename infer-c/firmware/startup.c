/* What a Cortex-M4F needs before main, and what QEMU's semihosting gives a program without a
 * C library: the vector table, .data copied and .bss zeroed, the FPU switched on, text out and
 * the exit status. */
#include <stdint.h>

#include "board.h"

extern uint32_t data_start[], data_end[], data_load[], bss_start[], bss_end[], stack_top[];
int main(void);

/* Semihosting call `op` with argument `arg` (the debugger, here QEMU, serves it). */
static uint32_t semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void board_print(const char *text) { semihost(0x04 /* SYS_WRITE0 */, text); }

void board_exit(int status) {
    /* SYS_EXIT: "application exit" is status 0 for QEMU, "run-time error" status 1. */
    semihost(0x18, (const void *)(uintptr_t)(status == 0 ? 0x20026 : 0x20023));
    for (;;) {
    }
}

void reset(void) {
    uint32_t *src = data_load, *dst = data_start;
    while (dst < data_end) {
        *dst++ = *src++;
    }
    for (dst = bss_start; dst < bss_end; dst++) {
        *dst = 0;
    }
    /* CPACR: full access to the FPU's coprocessors CP10 and CP11 (the library uses floats for
     * probabilities; so does the hard-float ABI). */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    board_exit(main());
}

static void fault(void) {
    board_print("fault\n");
    board_exit(1);
}

/* The initial stack pointer, then the reset handler and the core's 14 other exceptions. */
__attribute__((section(".vectors"), used)) static const struct {
    uint32_t *stack;
    void (*handlers[15])(void);
} vectors = {
    stack_top,
    {reset, fault, fault, fault, fault, fault, 0, 0, 0, 0, fault, fault, 0, fault, fault},
};
