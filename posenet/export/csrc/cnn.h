/*
 * posenas integer CNN inference: the MAX78000's arithmetic in portable C99.
 *
 * Each hardware layer is: optional pooling (max, or average truncated toward zero) -> convolution
 * (1x1 or 3x3, stride 1, zero padding) accumulating int8 x int8 -> + bias * 128 -> either
 *   - an 8-bit output: y = clamp(floor(acc * 2^shift / 128 + 1/2), -128, 127), then ReLU clamps at 0, or
 *   - a 32-bit "wide" output: the raw accumulator, clamped to [-2^29, 2^29 - 1].
 * These are the rules of ai8x-synthesis' reference simulation and of posenas' SIMULATE mode; the
 * host program checks the outputs bit for bit against the values posenas computed in Python.
 *
 * Tensors are channel-major (C, H, W). No dynamic memory: the generated network.c owns every buffer.
 */
#ifndef POSENAS_CNN_H
#define POSENAS_CNN_H

#include <stdint.h>

#define CNN_INPUT (-1) /* "source" of a layer that reads the network input */

typedef struct {
    const char *name;
    int source;            /* index of the layer whose output this layer reads, or CNN_INPUT */
    int in_channels, in_h, in_w;
    int pool, pool_avg;    /* pooling window = stride (0: none); average (1) or max (0) */
    int out_channels, out_h, out_w;
    int kernel, pad;       /* 1 or 3; zero padding */
    int shift;             /* output_shift + 8 - weight bits, in [-15, 15] */
    int relu, wide;
    const int8_t *weights; /* (out_channels, in_channels, kernel, kernel) */
    const int8_t *bias;    /* (out_channels), or NULL */
    int8_t *out8;          /* the output of a non-wide layer, (out_channels, out_h, out_w) */
    int32_t *out32;        /* the output of a wide layer */
} cnn_layer;

typedef struct {
    int layer_count;
    const cnn_layer *layers;
    int in_channels, in_h, in_w;
    int32_t *acc;          /* scratch: one output channel's accumulators, max out_h * (out_w + 2 pad) */
    int8_t *pooled;        /* scratch: the pooled input of the current layer, max C * H * W */
    int8_t *padded;        /* scratch: the zero-padded input, max C * (H + 2 pad) * (W + 2 pad) */
} cnn_network;

/* Run every layer on ``input`` (in_channels x in_h x in_w, values -128..127). */
void cnn_run(const cnn_network *net, const int8_t *input);

/* The 8-bit output rule for one accumulator (exposed for tests of the rounding). */
int8_t cnn_requantize(int32_t acc, int shift, int relu);

#endif
