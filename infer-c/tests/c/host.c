/* libinfer.a driven from C, as a C program on the host would: the statuses of wrong calls, then
 * one line per input.
 *
 *   host MODEL INPUTS N
 *
 * MODEL: a model file; INPUTS: N inputs of the model's width, back to back (raw bytes). Prints
 * "model: I inputs, C classes, KIND kernel", then per input its class and each class's
 * probability and logit as the bits of the float, in hex, so that the caller can compare them
 * exactly. Exits 1 on the first status that is not the expected one. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"

static void expect(InferStatus got, InferStatus want, const char *what) {
    if (got != want) {
        fprintf(stderr, "%s: status %d (%s), expected %d (%s)\n", what, (int)got,
                infer_status_message((int32_t)got), (int)want, infer_status_message((int32_t)want));
        exit(1);
    }
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *bytes;
    long size;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    /* malloc's alignment suits any type: at least the 4 bytes the model's sections need. */
    bytes = malloc((size_t)size + 1);
    if (!bytes || fread(bytes, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)size;
    return bytes;
}

static uint32_t bits(float v) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* What a caller can get wrong, and a file that is not what it should be: each its own status,
 * with the library's sentence where a load fails. */
static void wrong_calls(const uint8_t *bytes, size_t len, size_t inputs) {
    static InferModel model; /* static: zero-initialized, so "not loaded" */
    char why[160];
    uint8_t class_index = 0;
    uint8_t *input = calloc(inputs + 1, 1);
    uint8_t *copy = malloc(len + 4);
    InferPrediction prediction;

    expect(infer_classify(&model, input, inputs, &class_index), INFER_STATUS_NOT_LOADED,
           "classify with a model never loaded");
    expect(infer_predict(&model, input, inputs, &prediction), INFER_STATUS_NOT_LOADED,
           "predict with a model never loaded");
    if (infer_model_inputs(&model) != 0 || infer_model_classes(&model) != 0) {
        fprintf(stderr, "a model never loaded has a shape\n");
        exit(1);
    }
    expect(infer_model_load(NULL, bytes, len, why, sizeof why), INFER_STATUS_NULL_ARGUMENT,
           "load into NULL");
    expect(infer_model_load(&model, NULL, len, NULL, 0), INFER_STATUS_NULL_ARGUMENT,
           "load from NULL");
    expect(infer_model_load(&model, bytes, 3, why, sizeof why), INFER_STATUS_TRUNCATED,
           "load 3 bytes");
    memcpy(copy, bytes, len);
    copy[len / 2] ^= 0x40;
    expect(infer_model_load(&model, copy, len, why, sizeof why), INFER_STATUS_CRC_MISMATCH,
           "load a corrupted copy");
    if (strstr(why, "CRC") == NULL) {
        fprintf(stderr, "the corrupted copy's message does not say CRC: \"%s\"\n", why);
        exit(1);
    }
    /* A failed load leaves the model unusable, even one loaded before. */
    expect(infer_classify(&model, input, inputs, &class_index), INFER_STATUS_NOT_LOADED,
           "classify after a failed load");
    memcpy(copy + 1, bytes, len);
    expect(infer_model_load(&model, copy + 1, len, why, sizeof why), INFER_STATUS_MISALIGNED,
           "load from an odd address");
    memcpy(copy, "ONNX", 4);
    expect(infer_model_load(&model, copy, len, why, sizeof why), INFER_STATUS_BAD_MAGIC,
           "load what is not a model");

    expect(infer_model_load(&model, bytes, len, why, sizeof why), INFER_STATUS_OK, why);
    expect(infer_classify(&model, input, inputs - 1, &class_index), INFER_STATUS_INPUT_LENGTH,
           "classify an input one byte short");
    expect(infer_predict(&model, input, inputs + 1, &prediction), INFER_STATUS_INPUT_LENGTH,
           "predict an input one byte long");
    expect(infer_classify(&model, NULL, inputs, &class_index), INFER_STATUS_NULL_ARGUMENT,
           "classify NULL");
    expect(infer_classify(&model, input, inputs, NULL), INFER_STATUS_NULL_ARGUMENT,
           "classify into NULL");
    expect(infer_predict(&model, input, inputs, NULL), INFER_STATUS_NULL_ARGUMENT,
           "predict into NULL");
    free(input);
    free(copy);
}

int main(int argc, char **argv) {
    static InferModel model;
    char why[160], kernel[32];
    size_t len, inputs_len, inputs, classes, n, i, c;
    uint8_t *bytes, *all;
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL INPUTS N\n", argv[0]);
        return 2;
    }
    bytes = read_file(argv[1], &len);
    all = read_file(argv[2], &inputs_len);
    n = (size_t)strtoul(argv[3], NULL, 10);
    expect(infer_model_load(&model, bytes, len, why, sizeof why), INFER_STATUS_OK, why);
    inputs = infer_model_inputs(&model);
    classes = infer_model_classes(&model);
    if (inputs_len < n * inputs) {
        fprintf(stderr, "%s holds fewer than %lu inputs\n", argv[2], (unsigned long)n);
        return 2;
    }
    wrong_calls(bytes, len, inputs);
    infer_kernel_name(kernel, sizeof kernel);
    printf("model: %lu inputs, %lu classes, %s kernel\n", (unsigned long)inputs,
           (unsigned long)classes, kernel);
    for (i = 0; i < n; i++) {
        InferPrediction p;
        uint8_t class_index;
        expect(infer_predict(&model, all + i * inputs, inputs, &p), INFER_STATUS_OK, "predict");
        expect(infer_classify(&model, all + i * inputs, inputs, &class_index), INFER_STATUS_OK,
               "classify");
        if (class_index != p.class_index || p.classes != classes) {
            fprintf(stderr, "input %lu: classify says %u, predict %u of %u classes\n",
                    (unsigned long)i, class_index, p.class_index, p.classes);
            return 1;
        }
        printf("%u", p.class_index);
        for (c = 0; c < classes; c++) {
            printf(" %08" PRIx32 ":%08" PRIx32, bits(p.probabilities[c]), bits(p.logits[c]));
        }
        printf("\n");
    }
    free(bytes);
    free(all);
    return 0;
}
