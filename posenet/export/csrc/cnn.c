/* posenas integer CNN inference; see cnn.h for the arithmetic. */
#include "cnn.h"

#include <stddef.h>

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

/* acc[y][x] += w * in[y + ky - pad][x + kx - pad] over the valid range (zero padding elsewhere). */
static void accumulate_tap(int32_t *acc, const int8_t *in, int h, int w, int dy, int dx, int32_t weight)
{
    int y0 = dy < 0 ? -dy : 0, y1 = dy > 0 ? h - dy : h;
    int x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? w - dx : w;
    int y, x;
    for (y = y0; y < y1; y++) {
        int32_t *row = acc + (size_t)y * w;
        const int8_t *src = in + (size_t)(y + dy) * w + dx;
        for (x = x0; x < x1; x++) {
            row[x] += weight * src[x];
        }
    }
}

static void conv(const cnn_network *net, const cnn_layer *l, const int8_t *in)
{
    int h = l->out_h, w = l->out_w, plane = h * w, o, i, ky, kx, n;
    int k = l->kernel;
    for (o = 0; o < l->out_channels; o++) {
        int32_t *acc = net->acc;
        int32_t start = l->bias ? 128 * (int32_t)l->bias[o] : 0;
        for (n = 0; n < plane; n++) acc[n] = start;
        for (i = 0; i < l->in_channels; i++) {
            const int8_t *src = in + (size_t)i * plane;
            const int8_t *wt = l->weights + ((size_t)o * l->in_channels + i) * k * k;
            for (ky = 0; ky < k; ky++) {
                for (kx = 0; kx < k; kx++) {
                    int32_t weight = wt[ky * k + kx];
                    if (weight != 0) accumulate_tap(acc, src, h, w, ky - l->pad, kx - l->pad, weight);
                }
            }
        }
        if (l->wide) {
            int32_t *out = l->out32 + (size_t)o * plane;
            for (n = 0; n < plane; n++) {
                int32_t v = acc[n];
                out[n] = v < WIDE_MIN ? (int32_t)WIDE_MIN : v > WIDE_MAX ? (int32_t)WIDE_MAX : v;
            }
        } else {
            int8_t *out = l->out8 + (size_t)o * plane;
            for (n = 0; n < plane; n++) out[n] = cnn_requantize(acc[n], l->shift, l->relu);
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
