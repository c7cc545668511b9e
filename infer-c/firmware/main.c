/* infer-core from C on a Cortex-M4F: the model exported by `trainer export MODEL --format c
 * --name mlp` and MNIST test digits (digits.h, from digits.py) compiled in, libinfer.a linked
 * (built with `cargo build -p infer-c --release --target thumbv7em-none-eabihf
 * --no-default-features`). Validates the model, shows that a corrupted copy is refused, classifies
 * every digit and compares each class with the host's. No heap, no C library. */
#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "digits.h"
#include "infer.h"
#include "mlp.h"

static InferModel model;
/* A copy of the model to corrupt: 4-byte aligned, as the loader needs. */
static uint32_t corrupted[(sizeof mlp + 3) / 4];

static void print_number(unsigned long v) {
    char text[24];
    char *p = text + sizeof text - 1;
    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    board_print(p);
}

/* `hint #6` and `hint #7` bracket one inference for an instruction counter (NOPs on a core;
 * spelled as their encodings, which every GNU assembler takes). */
static uint8_t classify(const uint8_t *digit) {
    uint8_t class_index = 0xff;
    __asm__ volatile(".inst.n 0xbf60" ::: "memory"); /* hint #6 */
    InferStatus status = infer_classify(&model, digit, DIGIT_BYTES, &class_index);
    __asm__ volatile(".inst.n 0xbf70" ::: "memory"); /* hint #7 */
    if (status != INFER_STATUS_OK) {
        board_print("classify: ");
        board_print(infer_status_message(status));
        board_print("\n");
        board_exit(1);
    }
    return class_index;
}

int main(void) {
    char why[160], kernel[32];
    unsigned long correct = 0, disagree = 0, i;
    uint8_t *copy = (uint8_t *)corrupted;

    /* Read through a volatile pointer: a compiler may otherwise fold the copy and its corruption
     * into a second constant the size of the model. */
    for (i = 0; i < mlp_len; i++) {
        copy[i] = ((const volatile uint8_t *)mlp)[i];
    }
    copy[mlp_len / 2] ^= 0x40;
    if (infer_model_load(&model, copy, mlp_len, why, sizeof why) != INFER_STATUS_CRC_MISMATCH) {
        board_print("a corrupted copy of the model was not refused as such\n");
        return 1;
    }
    board_print("a corrupted copy is refused: ");
    board_print(why);
    board_print("\n");

    if (infer_model_load(&model, mlp, mlp_len, why, sizeof why) != INFER_STATUS_OK) {
        board_print("the model is refused: ");
        board_print(why);
        board_print("\n");
        return 1;
    }
    infer_kernel_name(kernel, sizeof kernel);
    board_print("infer-core from C on QEMU mps2-an386 (Cortex-M4F): ");
    print_number(mlp_len);
    board_print(" model bytes, kernel ");
    board_print(kernel);
    board_print("\n");

    for (i = 0; i < DIGITS; i++) {
        uint8_t class_index = classify(digits[i]);
        correct += class_index == labels[i];
        if (class_index != expected[i]) {
            disagree++;
            board_print("image ");
            print_number(i);
            board_print(": MCU predicts ");
            print_number(class_index);
            board_print(", host predicted ");
            print_number(expected[i]);
            board_print("\n");
        }
    }
    board_print("accuracy: ");
    print_number(correct);
    board_print("/");
    print_number(DIGITS);
    board_print(" embedded test digits correct\n");
    if (disagree != 0) {
        board_print("host and MCU DISAGREE on ");
        print_number(disagree);
        board_print(" images\n");
        return 1;
    }
    board_print("host and MCU agree on all ");
    print_number(DIGITS);
    board_print(" images\n");
    return 0;
}
