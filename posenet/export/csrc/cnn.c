/* posenas integer CNN inference; see cnn.h for the arithmetic. */
#include "cnn.h"

#include <stddef.h>
#include <string.h>

#define WIDE_MIN (-536870912L) /* -2^29: the hardware's 32-bit output range */
#define WIDE_MAX 536870911L

/* floor(v / 2^n) for any sign: C leaves >> of a negative number implementation-defined. */
static int64_t floor_shift(int64_t v, int n)
{
    int64_t d = (int64_t)1 << n;
    return v >= 0 ? v / d : -((-v + d - 1) / d);
}

int8_t cnn_requantize(int32_t acc, int shift, int relu)
{
    /* y = floor(acc * 2^(shift - 7) + 1/2), exactly, for shift in [-15, 15]. */
    int e = shift - 7;
    int64_t y;
    if (e >= 0) {
        y = (int64_t)acc * ((int64_t)1 << e);
    } else {
        y = floor_shift((int64_t)acc + ((int64_t)1 << (-e - 1)), -e);
    }
    if (y > 127) y = 127;
    if (y < -128) y = -128;
    if (relu && y < 0) y = 0;
    return (int8_t)y;
}

static const int8_t *layer_input(const cnn_network *net, const cnn_layer *layer, const int8_t *input)
{
    return layer->source == CNN_INPUT ? input : net->layers[layer->source].out8;
}

/* Non-overlapping pooling (window = stride), as fused in front of the convolution. */
static void pool(const cnn_layer *l, const int8_t *in, int8_t *out)
{
    int p = l->pool, h = l->in_h / p, w = l->in_w / p, c, y, x, dy, dx;
    for (c = 0; c < l->in_channels; c++) {
        const int8_t *plane = in + (size_t)c * l->in_h * l->in_w;
        for (y = 0; y < h; y++) {
            for (x = 0; x < w; x++) {
                int32_t best = -128, sum = 0;
                for (dy = 0; dy < p; dy++) {
                    for (dx = 0; dx < p; dx++) {
                        int32_t v = plane[(size_t)(y * p + dy) * l->in_w + (x * p + dx)];
                        sum += v;
                        if (v > best) best = v;
                    }
                }
                /* C division truncates toward zero: the hardware's average rounding. */
                out[((size_t)c * h + y) * w + x] = (int8_t)(l->pool_avg ? sum / (p * p) : best);
            }
        }
    }
}

/* Copy the (C, h, w) input into (C, h + 2 pad, w + 2 pad) with a zero border, so that every tap of a
 * row-major output position n = y * pw + x reads padded[n + ky * pw + kx]: one contiguous loop per tap
 * (computing pw - w unused columns per row) instead of clipped loops, which compilers vectorize. */
static void pad_input(const cnn_layer *l, const int8_t *in, int8_t *padded)
{
    int h = l->out_h, w = l->out_w, pad = l->pad, ph = h + 2 * pad, pw = w + 2 * pad, c, y;
    memset(padded, 0, (size_t)l->in_channels * ph * pw);
    for (c = 0; c < l->in_channels; c++) {
        for (y = 0; y < h; y++) {
            memcpy(padded + ((size_t)c * ph + y + pad) * pw + pad, in + ((size_t)c * h + y) * w, (size_t)w);
        }
    }
}

static void conv(const cnn_network *net, const cnn_layer *l, const int8_t *in)
{
    int h = l->out_h, w = l->out_w, k = l->kernel, pad = l->pad;
    int pw = w + 2 * pad, ph = h + 2 * pad;
    /* The last row's unused columns would read past the plane: loop to the last used position only. */
    int span = (h - 1) * pw + w, o, i, ky, kx, n, y, x;
    const int8_t *src = in;
    if (pad > 0) {
        pad_input(l, in, net->padded);
        src = net->padded;
    }
    for (o = 0; o < l->out_channels; o++) {
        int32_t *acc = net->acc;
        int32_t start = l->bias ? 128 * (int32_t)l->bias[o] : 0;
        for (n = 0; n < span; n++) acc[n] = start;
        for (i = 0; i < l->in_channels; i++) {
            const int8_t *plane = src + (size_t)i * ph * pw;
            const int8_t *wt = l->weights + ((size_t)o * l->in_channels + i) * k * k;
            for (ky = 0; ky < k; ky++) {
                for (kx = 0; kx < k; kx++) {
                    const int8_t *tap = plane + ky * pw + kx;
                    int32_t weight = wt[ky * k + kx];
                    if (weight == 0) continue;
                    for (n = 0; n < span; n++) acc[n] += weight * tap[n];
                }
            }
        }
        for (y = 0; y < h; y++) {
            const int32_t *row = acc + (size_t)y * pw;
            if (l->wide) {
                int32_t *out = l->out32 + ((size_t)o * h + y) * w;
                for (x = 0; x < w; x++) {
                    int32_t v = row[x];
                    out[x] = v < WIDE_MIN ? (int32_t)WIDE_MIN : v > WIDE_MAX ? (int32_t)WIDE_MAX : v;
                }
            } else {
                int8_t *out = l->out8 + ((size_t)o * h + y) * w;
                for (x = 0; x < w; x++) out[x] = cnn_requantize(row[x], l->shift, l->relu);
            }
        }
    }
}

void cnn_run(const cnn_network *net, const int8_t *input)
{
    int i;
    for (i = 0; i < net->layer_count; i++) {
        const cnn_layer *l = &net->layers[i];
        const int8_t *in = layer_input(net, l, input);
        if (l->pool > 0) {
            pool(l, in, net->pooled);
            in = net->pooled;
        }
        conv(net, l, in);
    }
}
