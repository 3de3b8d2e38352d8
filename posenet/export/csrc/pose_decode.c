/*
 * pose_decode.c: see pose_decode.h. Written from posenet/decode.py; comments name the Python
 * function that each part follows, and the NumPy or cv2 detail whose rounding it reproduces.
 */
#include "pose_decode.h"

#include <math.h>
#include <string.h>

#define PD_EXT_H (PD_MAX_MAP_H + 2 * PD_BORDER_CELLS)
#define PD_EXT_W (PD_MAX_MAP_W + 2 * PD_BORDER_CELLS)
#define PD_UP_H (PD_MAX_MAP_H * PD_MAX_UPSAMPLE)
#define PD_UP_W (PD_MAX_MAP_W * PD_MAX_UPSAMPLE)
#define PD_MAX_PEAKS (PD_NUM_KEYPOINTS * PD_MAX_PEAKS_PER_KEYPOINT)
#define PD_NO_PEAK (-1)
#define PD_LOG_FLOOR 1e-3f /* heatmap values are floored here before taking logs */
#define PD_TIE_RIGHT 1     /* candidate flags */
#define PD_TIE_DOWN 2
#define PD_SUPPRESSED 4

/* Compile-time checks: ids and pixel coordinates are stored as int16_t. */
typedef char pd_check_peak_ids[(PD_MAX_PEAKS <= 32767 && PD_MAX_PEOPLE <= 32767) ? 1 : -1];
typedef char pd_check_pixels[(PD_UP_H <= 32767 && PD_UP_W <= 32767) ? 1 : -1];
typedef char pd_check_limits[(PD_MAX_MAP_H >= 1 && PD_MAX_MAP_W >= 1 && PD_MAX_UPSAMPLE >= 1 &&
                              PD_MAX_CANDIDATES >= 1 && PD_MAX_PEAKS_PER_KEYPOINT >= 1 &&
                              PD_MAX_PEOPLE >= 1 && PD_MAX_PAF_SAMPLES >= 2 &&
                              PD_MAX_PAF_SAMPLES <= 255)
                                 ? 1
                                 : -1];

const uint8_t PD_LIMBS[PD_NUM_LIMBS][2] = {
    {1, 8}, {8, 9},  {9, 10}, {1, 11}, {11, 12}, {12, 13}, {1, 2},   {2, 3},   {3, 4},   {2, 16},
    {1, 5}, {5, 6},  {6, 7},  {5, 17}, {1, 0},   {0, 14},  {0, 15},  {14, 16}, {15, 17},
};
const uint8_t PD_GROUPING_ORDER[PD_NUM_LIMBS] = {6, 10, 7, 8, 11, 12, 0, 1, 2, 3,
                                                 4, 5,  14, 15, 17, 16, 18, 9, 13};
const uint8_t PD_REDUNDANT_LIMBS[PD_NUM_REDUNDANT_LIMBS] = {9, 13};

/* ---- types ---------------------------------------------------------------------------------- */

/* Where map values come from: float maps, or int32 accumulators divided by a scale. */
typedef struct {
    const float *values;
    const int32_t *acc;
    float scale;
} pd_source;

/* One destination pixel of the cubic resize along one axis: 4 source indices (clamped: cv2's
 * replicated border) and their weights. */
typedef struct {
    int16_t tap[4];
    float weight[4];
} pd_taps;

typedef struct {
    float score;
    int16_t row, col; /* upsampled pixel */
} pd_candidate;

typedef struct {
    float x, y, score;
} pd_peak;

typedef struct {
    int16_t from, to; /* global peak ids */
    float affinity;
} pd_connection;

typedef struct {
    int16_t ids[PD_NUM_KEYPOINTS]; /* peak id per body slot, PD_NO_PEAK = empty */
    double score;
    int count;
    int merged; /* merged into another person (Python's None) */
} pd_person;

/* ---- static work buffers (sizes in pose_decode.h) ------------------------------------------- */

static float s_ext[2][PD_EXT_H * PD_EXT_W]; /* border-extended maps, row stride w + 4 */
static float s_rows[PD_EXT_H * PD_UP_W];    /* horizontal pass, row stride w * upsample */
static float s_up[PD_UP_H * PD_UP_W];       /* one upsampled heatmap, row stride w * upsample */
static pd_taps s_xtaps[PD_UP_W];
static pd_taps s_ytaps[PD_UP_H];
static pd_candidate s_cand[PD_MAX_CANDIDATES];
static uint8_t s_cand_flags[PD_MAX_CANDIDATES]; /* bits: 1 tie right, 2 tie down, 4 suppressed */
static pd_peak s_peaks[PD_NUM_KEYPOINTS][PD_MAX_PEAKS_PER_KEYPOINT];
static int s_npeaks[PD_NUM_KEYPOINTS];
static float s_pair_sum[PD_MAX_PEAKS_PER_KEYPOINT * PD_MAX_PEAKS_PER_KEYPOINT];
static uint8_t s_pair_support[PD_MAX_PEAKS_PER_KEYPOINT * PD_MAX_PEAKS_PER_KEYPOINT]; /* 0: rejected */
static pd_connection s_conn[PD_NUM_LIMBS][PD_MAX_PEAKS_PER_KEYPOINT];
static int s_nconn[PD_NUM_LIMBS];
static int16_t s_owner[PD_MAX_PEAKS];
static pd_person s_people[PD_MAX_PEOPLE];
static int s_order[PD_MAX_PEOPLE];

size_t pd_static_bytes(void)
{
    return sizeof s_ext + sizeof s_rows + sizeof s_up + sizeof s_xtaps + sizeof s_ytaps +
           sizeof s_cand + sizeof s_cand_flags + sizeof s_peaks + sizeof s_npeaks + sizeof s_pair_sum +
           sizeof s_pair_support + sizeof s_conn + sizeof s_nconn + sizeof s_owner +
           sizeof s_people + sizeof s_order;
}

/* ---- small helpers with NumPy's semantics --------------------------------------------------- */

/* np.maximum / np.minimum: NaN propagates. */
static float np_maximum(float a, float b)
{
    return (a != a || a >= b) ? a : b;
}

static float np_minimum(float a, float b)
{
    return (a != a || a <= b) ? a : b;
}

/* NumPy's float32 sum of a contiguous run (pairwise summation, 8 accumulators per block of up to
 * 128 values; fewer than 8 values: left to right from 0). Reproduces ndarray.sum's rounding. */
static float np_pairwise_sum(const float *a, int n)
{
    if (n < 8) {
        float res = 0.0f;
        int i;
        for (i = 0; i < n; i++) {
            res += a[i];
        }
        return res;
    }
    if (n <= 128) {
        float r[8], res;
        int i, j;
        for (j = 0; j < 8; j++) {
            r[j] = a[j];
        }
        for (i = 8; i < n - (n % 8); i += 8) {
            for (j = 0; j < 8; j++) {
                r[j] += a[i + j];
            }
        }
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) {
            res += a[i];
        }
        return res;
    }
    {
        int n2 = n / 2;
        n2 -= n2 % 8;
        return np_pairwise_sum(a, n2) + np_pairwise_sum(a + n2, n - n2);
    }
}

static float source_value(const pd_source *src, size_t index)
{
    if (src->values != NULL) {
        return src->values[index];
    }
    return (float)src->acc[index] / src->scale;
}

/* ---- 1. border extension (decode._extend_borders / _continue_line) --------------------------- */

/* Values 1 and 2 steps beyond a border from the n (<= 3) cells nearest to it: v0 at the border,
 * v1 and v2 inwards. Linear (n = 2), constant (n = 1), or for heatmaps with n = 3 a Gaussian
 * (a downward parabola in log space) capped by max(linear, v0). Float32, in NumPy's order. */
static void continue_line(float v0, float v1, float v2, int n, int gaussian, float out[2])
{
    float log0, log1, log2, curvature, slope;
    int i;
    if (n < 2) {
        v1 = v0;
    }
    for (i = 0; i < 2; i++) {
        float step = (float)(i + 1);
        out[i] = v0 + (v0 - v1) * step;
    }
    if (!gaussian || n < 3) {
        return;
    }
    log2 = logf(np_maximum(v2, PD_LOG_FLOOR));
    log1 = logf(np_maximum(v1, PD_LOG_FLOOR));
    log0 = logf(np_maximum(v0, PD_LOG_FLOOR));
    curvature = log0 - 2.0f * log1 + log2;
    slope = log0 - log1;
    if (!(curvature < 0.0f)) {
        return; /* not a blob: the linear continuation stands */
    }
    for (i = 0; i < 2; i++) {
        float step = (float)(i + 1);
        float gauss = expf(log0 + slope * step + curvature * step * (step + 1.0f) / 2.0f);
        out[i] = np_minimum(gauss, np_maximum(out[i], v0));
    }
}

/* Extend one line of n values in place: line[0] is its first value, consecutive values are
 * `stride` apart, and two free slots lie before and after it. */
static void extend_line(float *line, ptrdiff_t stride, int n, int gaussian)
{
    float before[2], after[2];
    int m = n < 3 ? n : 3;
    float first1 = m > 1 ? line[stride] : 0.0f, first2 = m > 2 ? line[2 * stride] : 0.0f;
    float last1 = m > 1 ? line[(n - 2) * stride] : 0.0f;
    float last2 = m > 2 ? line[(n - 3) * stride] : 0.0f;
    continue_line(line[0], first1, first2, m, gaussian, before);
    continue_line(line[(n - 1) * stride], last1, last2, m, gaussian, after);
    line[-stride] = before[0];
    line[-2 * stride] = before[1];
    line[n * stride] = after[0];
    line[(n + 1) * stride] = after[1];
}

/* Channel `channel` of src, (h, w), into ext as (h + 4, w + 4): rows first, then columns (corners
 * are continued twice), as _extend_borders. */
static void extend_channel(const pd_source *src, int channel, int h, int w, int gaussian, float *ext)
{
    const int ew = w + 2 * PD_BORDER_CELLS;
    const size_t base = (size_t)channel * (size_t)h * (size_t)w;
    int r, c;
    for (r = 0; r < h; r++) {
        for (c = 0; c < w; c++) {
            ext[(r + 2) * ew + c + 2] = source_value(src, base + (size_t)r * (size_t)w + (size_t)c);
        }
    }
    for (c = 0; c < w; c++) {
        extend_line(ext + 2 * ew + c + 2, ew, h, gaussian);
    }
    for (r = 0; r < h + 2 * PD_BORDER_CELLS; r++) {
        extend_line(ext + r * ew + 2, 1, w, gaussian);
    }
}

/* ---- 2. cubic upsampling (cv2.resize INTER_CUBIC on the extended map, cropped) ---------------- */

/* Keys' cubic kernel with A = -0.75, in float32 and in OpenCV's evaluation order. */
static void cubic_weights(float x, float weight[4])
{
    const float a = -0.75f;
    weight[0] = ((a * (x + 1.0f) - 5.0f * a) * (x + 1.0f) + 8.0f * a) * (x + 1.0f) - 4.0f * a;
    weight[1] = ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    weight[2] = ((a + 2.0f) * (1.0f - x) - (a + 3.0f)) * (1.0f - x) * (1.0f - x) + 1.0f;
    weight[3] = 1.0f - weight[0] - weight[1] - weight[2];
}

/* Taps of the n * upsample destination pixels that survive the crop, along an axis of n cells
 * (n + 4 after extension). Destination pixel J of the extended resize samples the source at
 * (J + 0.5) / upsample - 0.5, computed as cv2 does (double, then rounded to float). */
static void build_taps(pd_taps *taps, int n, int upsample)
{
    const int src_n = n + 2 * PD_BORDER_CELLS;
    const double scale = 1.0 / ((double)(src_n * upsample) / (double)src_n);
    int j, k;
    for (j = 0; j < n * upsample; j++) {
        const int dst = j + PD_BORDER_CELLS * upsample;
        float fx = (float)((dst + 0.5) * scale - 0.5);
        int sx = (int)floorf(fx);
        fx -= (float)sx;
        cubic_weights(fx, taps[j].weight);
        for (k = 0; k < 4; k++) {
            int s = sx - 1 + k;
            s = s < 0 ? 0 : (s >= src_n ? src_n - 1 : s);
            taps[j].tap[k] = (int16_t)s;
        }
    }
}

/* Horizontal pass at one destination column of one extended row: cv2 sums left to right. */
static float cubic_row(const float *row, const pd_taps *t)
{
    return row[t->tap[0]] * t->weight[0] + row[t->tap[1]] * t->weight[1] +
           row[t->tap[2]] * t->weight[2] + row[t->tap[3]] * t->weight[3];
}

/* Vertical pass: cv2's vectorised float path computes b0*r0 + (b1*r1 + (b2*r2 + b3*r3)). */
static float cubic_column(float r0, float r1, float r2, float r3, const pd_taps *t)
{
    return r0 * t->weight[0] + (r1 * t->weight[1] + (r2 * t->weight[2] + r3 * t->weight[3]));
}

/* Heatmap `channel` upsampled into s_up ((h * upsample) x (w * upsample), cropped). */
static void upsample_heatmap(const pd_source *src, int channel, int h, int w, int upsample)
{
    const int ew = w + 2 * PD_BORDER_CELLS, uw = w * upsample, uh = h * upsample;
    int r, i, j;
    extend_channel(src, channel, h, w, 1, s_ext[0]);
    for (r = 0; r < h + 2 * PD_BORDER_CELLS; r++) {
        for (j = 0; j < uw; j++) {
            s_rows[r * uw + j] = cubic_row(s_ext[0] + r * ew, &s_xtaps[j]);
        }
    }
    for (i = 0; i < uh; i++) {
        const pd_taps *t = &s_ytaps[i];
        const float *r0 = s_rows + t->tap[0] * uw, *r1 = s_rows + t->tap[1] * uw;
        const float *r2 = s_rows + t->tap[2] * uw, *r3 = s_rows + t->tap[3] * uw;
        for (j = 0; j < uw; j++) {
            s_up[i * uw + j] = cubic_column(r0[j], r1[j], r2[j], r3[j], t);
        }
    }
}

/* One upsampled pixel of an extended map: the same arithmetic as upsample_heatmap's. */
static float upsampled_value(const float *ext, int w, int row, int col)
{
    const int ew = w + 2 * PD_BORDER_CELLS;
    const pd_taps *ty = &s_ytaps[row], *tx = &s_xtaps[col];
    return cubic_column(cubic_row(ext + ty->tap[0] * ew, tx), cubic_row(ext + ty->tap[1] * ew, tx),
                        cubic_row(ext + ty->tap[2] * ew, tx), cubic_row(ext + ty->tap[3] * ew, tx), ty);
}

/* ---- 3. peaks (extract_peaks / _local_maxima / _suppress_close) ------------------------------ */

/* Insert into the candidates sorted by descending score; equal scores stay in arrival (row-major)
 * order, as the stable lexsort. When full, the lowest-scoring candidate is dropped. */
static int insert_candidate(int count, float score, int row, int col, int flags)
{
    int at = count;
    while (at > 0 && s_cand[at - 1].score < score) {
        at--;
    }
    if (at >= PD_MAX_CANDIDATES) {
        return count;
    }
    if (count == PD_MAX_CANDIDATES) {
        count--;
    }
    memmove(&s_cand[at + 1], &s_cand[at], (size_t)(count - at) * sizeof s_cand[0]);
    memmove(&s_cand_flags[at + 1], &s_cand_flags[at], (size_t)(count - at) * sizeof s_cand_flags[0]);
    s_cand[at].score = score;
    s_cand[at].row = (int16_t)row;
    s_cand[at].col = (int16_t)col;
    s_cand_flags[at] = (uint8_t)flags;
    return count + 1;
}

/* Candidate coordinates in double, as NumPy's (col + 0.5 + 0.5 * tie) * pixel_size (suppression
 * measures these doubles; the peak table holds them rounded to float32). */
static double candidate_x(int i, double pixel_size)
{
    return ((double)s_cand[i].col + 0.5 + 0.5 * (double)(s_cand_flags[i] & PD_TIE_RIGHT)) * pixel_size;
}

static double candidate_y(int i, double pixel_size)
{
    const double tie = (s_cand_flags[i] & PD_TIE_DOWN) ? 1.0 : 0.0;
    return ((double)s_cand[i].row + 0.5 + 0.5 * tie) * pixel_size;
}

/* Peaks of keypoint k from s_up: local maxima, then suppression by score order. */
static void find_peaks(int k, int uh, int uw, const pd_config *cfg)
{
    const double pixel_size = (double)cfg->stride / (double)cfg->upsample;
    const double radius_sq = cfg->nms_radius * cfg->nms_radius;
    const float threshold = cfg->peak_threshold;
    int count = 0, r, c, i, j, kept = 0;
    for (r = 0; r < uh; r++) {
        const float *row = s_up + r * uw;
        for (c = 0; c < uw; c++) {
            const float v = row[c];
            int flags = 0;
            if (!(v >= threshold)) {
                continue;
            }
            if (c > 0 && !(v > row[c - 1])) {
                continue;
            }
            if (c < uw - 1 && !(v >= row[c + 1])) {
                continue;
            }
            if (r > 0 && !(v > row[c - uw])) {
                continue;
            }
            if (r < uh - 1 && !(v >= row[c + uw])) {
                continue;
            }
            if (c < uw - 1 && row[c + 1] == v) {
                flags |= PD_TIE_RIGHT;
            }
            if (r < uh - 1 && row[c + uw] == v) {
                flags |= PD_TIE_DOWN;
            }
            count = insert_candidate(count, v, r, c, flags);
        }
    }
    for (i = 0; i < count; i++) {
        const double xi = candidate_x(i, pixel_size), yi = candidate_y(i, pixel_size);
        if (s_cand_flags[i] & PD_SUPPRESSED) {
            continue;
        }
        if (kept < PD_MAX_PEAKS_PER_KEYPOINT) {
            s_peaks[k][kept].x = (float)xi;
            s_peaks[k][kept].y = (float)yi;
            s_peaks[k][kept].score = s_cand[i].score;
        }
        kept++;
        for (j = i + 1; j < count; j++) {
            const double dx = xi - candidate_x(j, pixel_size), dy = yi - candidate_y(j, pixel_size);
            if (dx * dx + dy * dy < radius_sq) {
                s_cand_flags[j] |= PD_SUPPRESSED;
            }
        }
    }
    s_npeaks[k] = kept < PD_MAX_PEAKS_PER_KEYPOINT ? kept : PD_MAX_PEAKS_PER_KEYPOINT;
}

/* ---- 4a. limb scoring (score_limbs / _pair_affinities / _match_one_to_one) ------------------- */

static void score_limb(int limb, const pd_source *pafs, int h, int w, const pd_config *cfg,
                       const int *first_id)
{
    const int a = PD_LIMBS[limb][0], b = PD_LIMBS[limb][1];
    const int na = s_npeaks[a], nb = s_npeaks[b];
    const int uh = h * cfg->upsample, uw = w * cfg->upsample, samples = cfg->paf_samples;
    const double pixel_size = (double)cfg->stride / (double)cfg->upsample;
    const double t_step = 1.0 / (double)(samples - 1); /* np.linspace(0, 1, samples) */
    float values[PD_MAX_PAF_SAMPLES];
    uint8_t row_used[PD_MAX_PEAKS_PER_KEYPOINT], col_used[PD_MAX_PEAKS_PER_KEYPOINT];
    int p, q, s, n = 0;
    s_nconn[limb] = 0;
    if (na == 0 || nb == 0) {
        return;
    }
    extend_channel(pafs, 2 * limb, h, w, 0, s_ext[0]);
    extend_channel(pafs, 2 * limb + 1, h, w, 0, s_ext[1]);
    for (p = 0; p < na; p++) {
        const pd_peak *from = &s_peaks[a][p];
        for (q = 0; q < nb; q++) {
            const pd_peak *to = &s_peaks[b][q];
            const float dx = to->x - from->x, dy = to->y - from->y; /* float32 delta */
            const float length = sqrtf(dx * dx + dy * dy);
            const float ux = length > 0.0f ? dx / length : dx, uy = length > 0.0f ? dy / length : dy;
            int support = 0;
            double affinity;
            for (s = 0; s < samples; s++) {
                const double t = s == samples - 1 ? 1.0 : (double)s * t_step;
                const double x = (double)from->x + t * (double)dx, y = (double)from->y + t * (double)dy;
                /* nearest upsampled pixel, np.rint = round half to even, then clipped */
                double col = rint(x / pixel_size - 0.5), row = rint(y / pixel_size - 0.5);
                int ic, ir;
                float projection;
                col = col < 0.0 ? 0.0 : (col > (double)(uw - 1) ? (double)(uw - 1) : col);
                row = row < 0.0 ? 0.0 : (row > (double)(uh - 1) ? (double)(uh - 1) : row);
                ic = (int)col;
                ir = (int)row;
                projection = upsampled_value(s_ext[0], w, ir, ic) * ux +
                             upsampled_value(s_ext[1], w, ir, ic) * uy;
                if (projection > cfg->paf_min_score) {
                    values[s] = projection;
                    support++;
                } else {
                    values[s] = 0.0f;
                }
            }
            s_pair_sum[p * nb + q] = np_pairwise_sum(values, samples);
            /* float32 sum / int64 count: a double in NumPy */
            affinity = (double)s_pair_sum[p * nb + q] / (double)(support > 0 ? support : 1);
            s_pair_support[p * nb + q] =
                (length > 0.0f && affinity > 0.0 &&
                 (double)support / (double)samples > cfg->paf_min_ratio)
                    ? (uint8_t)support
                    : 0;
        }
    }
    /* Greedy one-to-one matching by descending affinity, ties in row-major order: the next kept
     * pair is always the best one whose ends are both still free. */
    memset(row_used, 0, sizeof row_used);
    memset(col_used, 0, sizeof col_used);
    for (;;) {
        int best = -1;
        double best_affinity = 0.0;
        for (p = 0; p < na; p++) {
            if (row_used[p]) {
                continue;
            }
            for (q = 0; q < nb; q++) {
                const int i = p * nb + q;
                double affinity;
                if (col_used[q] || s_pair_support[i] == 0) {
                    continue;
                }
                affinity = (double)s_pair_sum[i] / (double)s_pair_support[i];
                if (best < 0 || affinity > best_affinity) {
                    best = i;
                    best_affinity = affinity;
                }
            }
        }
        if (best < 0) {
            break;
        }
        p = best / nb;
        q = best % nb;
        row_used[p] = col_used[q] = 1;
        s_conn[limb][n].from = (int16_t)(first_id[a] + p);
        s_conn[limb][n].to = (int16_t)(first_id[b] + q);
        s_conn[limb][n].affinity = (float)best_affinity; /* connections are float32 in Python */
        n++;
    }
    s_nconn[limb] = n;
}

/* ---- 4b. grouping: pose_group.h, shared with the grid decoder ----------------------------------------- */

#define PGRP_SCORE double
#define PGRP_COUNT int
#define PGRP_PERSON pd_person
#define PGRP_CONNECTION pd_connection
#define PGRP_PEAK pd_peak
#define PGRP_POSE pd_pose
#define PGRP_CONFIG pd_config
#define PGRP_NO_PEAK PD_NO_PEAK
#define PGRP_NUM_KEYPOINTS PD_NUM_KEYPOINTS
#define PGRP_NUM_LIMBS PD_NUM_LIMBS
#define PGRP_MAX_PEOPLE PD_MAX_PEOPLE
#define PGRP_NUM_REDUNDANT_LIMBS PD_NUM_REDUNDANT_LIMBS
#define PGRP_LIMBS PD_LIMBS
#define PGRP_GROUPING_ORDER PD_GROUPING_ORDER
#define PGRP_REDUNDANT_LIMBS PD_REDUNDANT_LIMBS
#include "pose_group.h"

/* ---- decode ------------------------------------------------------------------------------- */

void pd_default_config(pd_config *cfg, int input_size)
{
    cfg->upsample = 8;
    cfg->stride = 8;
    cfg->peak_threshold = 0.1f;
    cfg->nms_radius = (double)(6 * input_size) / 368.0;
    cfg->paf_samples = 10;
    cfg->paf_min_score = 0.05f;
    cfg->paf_min_ratio = 0.8;
    cfg->min_keypoints = 3;
    cfg->min_mean_score = 0.2;
}

static int check_arguments(int h, int w, const pd_config *cfg, const pd_pose *poses, int max_poses)
{
    if (cfg == NULL || max_poses < 0 || (poses == NULL && max_poses > 0)) {
        return PD_ERR_ARGUMENT;
    }
    if (h < 1 || w < 1 || h > PD_MAX_MAP_H || w > PD_MAX_MAP_W) {
        return PD_ERR_SIZE;
    }
    if (cfg->upsample < 1 || cfg->upsample > PD_MAX_UPSAMPLE || cfg->stride < 1 ||
        cfg->paf_samples < 2 || cfg->paf_samples > PD_MAX_PAF_SAMPLES || !(cfg->nms_radius >= 0.0)) {
        return PD_ERR_CONFIG;
    }
    return 0;
}

static int decode(const pd_source *heatmaps, const pd_source *pafs, int h, int w,
                  const pd_config *cfg, pd_pose *poses, int max_poses)
{
    int first_id[PD_NUM_KEYPOINTS];
    int k, limb, total = 0;
    const int uh = h * cfg->upsample, uw = w * cfg->upsample;

    build_taps(s_xtaps, w, cfg->upsample);
    build_taps(s_ytaps, h, cfg->upsample);
    for (k = 0; k < PD_NUM_KEYPOINTS; k++) {
        upsample_heatmap(heatmaps, k, h, w, cfg->upsample);
        find_peaks(k, uh, uw, cfg);
        first_id[k] = total;
        total += s_npeaks[k];
    }
    for (limb = 0; limb < PD_NUM_LIMBS; limb++) {
        score_limb(limb, pafs, h, w, cfg, first_id);
    }
    return group_people(total, first_id, cfg, poses, max_poses);
}

int pd_decode(const float *heatmaps, const float *pafs, int h, int w, const pd_config *cfg,
              pd_pose *poses, int max_poses)
{
    pd_source hm, pf;
    int error = check_arguments(h, w, cfg, poses, max_poses);
    if (error == 0 && (heatmaps == NULL || pafs == NULL)) {
        error = PD_ERR_ARGUMENT;
    }
    if (error != 0) {
        return error;
    }
    hm.values = heatmaps;
    hm.acc = NULL;
    hm.scale = 1.0f;
    pf.values = pafs;
    pf.acc = NULL;
    pf.scale = 1.0f;
    return decode(&hm, &pf, h, w, cfg, poses, max_poses);
}

int pd_decode_int32(const int32_t *heatmap_acc, float heatmap_scale, const int32_t *paf_acc,
                    float paf_scale, int h, int w, const pd_config *cfg, pd_pose *poses,
                    int max_poses)
{
    pd_source hm, pf;
    int error = check_arguments(h, w, cfg, poses, max_poses);
    if (error == 0 && (heatmap_acc == NULL || paf_acc == NULL || !(heatmap_scale > 0.0f) ||
                       !(paf_scale > 0.0f) || !isfinite(heatmap_scale) || !isfinite(paf_scale))) {
        error = PD_ERR_ARGUMENT;
    }
    if (error != 0) {
        return error;
    }
    hm.values = NULL;
    hm.acc = heatmap_acc;
    hm.scale = heatmap_scale;
    pf.values = NULL;
    pf.acc = paf_acc;
    pf.scale = paf_scale;
    return decode(&hm, &pf, h, w, cfg, poses, max_poses);
}
