/*
 * pose_grid.c: see pose_grid.h. Written from posenet/pose/grid_decode.py; every float32 expression is
 * grid_decode.py's, in its order (comments name the Python function each part follows).
 */
#include "pose_grid.h"

#include <math.h>
#include <string.h>

#define PG_MAX_PEAKS (PG_NUM_KEYPOINTS * PG_MAX_PEAKS_PER_KEYPOINT)
#define PG_NO_PEAK (-1)
#define PG_LOG_FLOOR 1e-3f /* values are floored here before taking logs */

/* Phase marks for profiling (bench_m4.py --phases): -DPG_PROFILE calls pg_profile_mark(phase) at each phase's end. */
#ifdef PG_PROFILE
extern void pg_profile_mark(int phase);
#define PG_MARK(phase) pg_profile_mark(phase)
#else
#define PG_MARK(phase) ((void)0)
#endif

/* Compile-time checks: peak ids and people are stored as int16_t, cells as uint8_t, supports as uint8_t. */
typedef char pg_check_ids[(PG_MAX_PEAKS <= 32767 && PG_MAX_PEOPLE <= 32767) ? 1 : -1];
typedef char pg_check_limits[(PG_MAX_CANDIDATES >= 1 && PG_MAX_PEAKS_PER_KEYPOINT >= 1 && PG_MAX_PEOPLE >= 1 &&
                              PG_MAX_MAP_SIDE >= 1 && PG_MAX_MAP_SIDE <= 255 && PG_MAX_PAF_SAMPLES >= 2)
                                 ? 1
                                 : -1];

const uint8_t PG_LIMBS[PG_NUM_LIMBS][2] = {
    {1, 8}, {8, 9},  {9, 10}, {1, 11}, {11, 12}, {12, 13}, {1, 2},   {2, 3},   {3, 4},   {2, 16},
    {1, 5}, {5, 6},  {6, 7},  {5, 17}, {1, 0},   {0, 14},  {0, 15},  {14, 16}, {15, 17},
};
const uint8_t PG_GROUPING_ORDER[PG_NUM_LIMBS] = {6, 10, 7, 8, 11, 12, 0, 1, 2, 3, 4, 5, 14, 15, 17, 16, 18, 9, 13};
const uint8_t PG_REDUNDANT_LIMBS[PG_NUM_REDUNDANT_LIMBS] = {9, 13};

/* ---- types ---------------------------------------------------------------------------------------- */

/* Where map values come from: float maps, or int32 accumulators times 1 / scale. */
typedef struct {
    const float *values;
    const int32_t *acc;
    float inv_scale;
    int32_t acc_threshold; /* int32 input: the smallest accumulator that converts to >= peak_threshold */
} pg_source;

typedef struct {
    float value;        /* the cell's value */
    float x, y, score;  /* refined position (input px) and fitted maximum */
    uint8_t row, col;
    uint8_t suppressed;
} pg_candidate;

typedef struct {
    float x, y, score;
} pg_peak;

typedef struct {
    int16_t from, to; /* global peak ids */
    float affinity;
} pg_connection;

typedef struct {
    int16_t ids[PG_NUM_KEYPOINTS]; /* peak id per body slot, PG_NO_PEAK = empty */
    float score;
    int16_t count;
    uint8_t merged; /* merged into another person (Python's None) */
} pg_person;

/* ---- static work buffers (sizes in pose_grid.h) -------------------------------------------------- */

static pg_candidate s_cand[PG_MAX_CANDIDATES];
static pg_peak s_peaks[PG_NUM_KEYPOINTS][PG_MAX_PEAKS_PER_KEYPOINT];
static int s_npeaks[PG_NUM_KEYPOINTS];
#if PG_MAX_PEAKS_PER_KEYPOINT <= 255
typedef uint16_t pg_pair_index; /* p * nb + q */
#else
typedef uint32_t pg_pair_index;
#endif
static pg_pair_index s_pair_index[PG_MAX_PEAKS_PER_KEYPOINT * PG_MAX_PEAKS_PER_KEYPOINT]; /* the pairs that pass */
static float s_pair_affinity[PG_MAX_PEAKS_PER_KEYPOINT * PG_MAX_PEAKS_PER_KEYPOINT];      /* and their affinities */
static pg_connection s_conn[PG_NUM_LIMBS][PG_MAX_PEAKS_PER_KEYPOINT];
static int s_nconn[PG_NUM_LIMBS];
static int16_t s_owner[PG_MAX_PEAKS];
static pg_person s_people[PG_MAX_PEOPLE];
static int s_order[PG_MAX_PEOPLE];

size_t pg_static_bytes(void)
{
    return sizeof s_cand + sizeof s_peaks + sizeof s_npeaks + sizeof s_pair_affinity + sizeof s_pair_index +
           sizeof s_conn + sizeof s_nconn + sizeof s_owner + sizeof s_people + sizeof s_order;
}

/* One map value as float32: the float map's, or the accumulator times 1 / scale. */
static float cell(const pg_source *src, int index)
{
    return src->values != NULL ? src->values[index] : (float)src->acc[index] * src->inv_scale;
}

/* ---- log and exp: polynomials in float32, bit for bit those of grid_decode.py (no libm) ---------- */

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ln(max(v, 1e-3)) (NaN counts as below the floor): v = m * 2^e with m in [sqrt(1/2), sqrt(2)),
 * ln(v) = e ln 2 + z P(z), z = m - 1, P of degree 6 (absolute error under 3e-7). grid_decode.floored_log. */
static float floored_log(float v)
{
    uint32_t u;
    int e;
    float m, z, p;
    if (!(v > PG_LOG_FLOOR)) {
        v = PG_LOG_FLOOR;
    }
    u = float_bits(v);
    e = (int)(u >> 23) - 127;
    m = bits_float((u & 0x7FFFFFu) | 0x3F800000u);
    if (m > 0x1.6a09e6p+0f) { /* sqrt(2) */
        m = m * 0.5f;
        e++;
    }
    z = m - 1.0f;
    p = 0x1.d4f456p-4f;
    p = p * z + -0x1.809922p-3f;
    p = p * z + 0x1.a7667p-3f;
    p = p * z + -0x1.fde9dcp-3f;
    p = p * z + 0x1.54fb36p-2f;
    p = p * z + -0x1.0001e6p-1f;
    p = p * z + 0x1.000046p+0f;
    p = p * z;
    return (float)e * 0x1.62e43p-1f + p; /* ln 2 */
}

/* e^x = 2^y, y = x log2(e) = k + f, 2^f by a degree-5 polynomial (relative error under 2e-7); 0 below
 * 2^-126 (and for NaN), infinity from 2^128. grid_decode.fast_exp. */
static float fast_exp(float x)
{
    const float y = x * 0x1.715476p+0f; /* log2(e) */
    float f, q;
    int k;
    if (!(y > -126.0f)) {
        return 0.0f;
    }
    if (y >= 128.0f) {
        return bits_float(0x7F800000u);
    }
    k = (int)y;
    if ((float)k > y) {
        k--; /* floor */
    }
    f = y - (float)k;
    q = 0x1.f0ca8p-10f;
    q = q * f + 0x1.25264ap-7f;
    q = q * f + 0x1.c9a1ccp-5f;
    q = q * f + 0x1.ebceecp-3f;
    q = q * f + 0x1.62e52ap-1f;
    q = q * f + 0x1.fffffcp-1f;
    return q * bits_float((uint32_t)(k + 127) << 23);
}

/* ---- 1. peaks (grid_peaks / refine_offsets / _suppress) ----------------------------------------- */

/* a - b saturated to int32 (its sign is always a - b's): the DSP instruction on the Cortex-M4. */
#if defined(__ARM_FEATURE_DSP)
static inline int32_t pg_qsub(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("qsub %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
static int32_t pg_qsub(int32_t a, int32_t b)
{
    const int64_t d = (int64_t)a - (int64_t)b;
    return d < INT32_MIN ? INT32_MIN : (d > INT32_MAX ? INT32_MAX : (int32_t)d);
}
#endif

/* Insert into the candidates sorted by descending value; equal values stay in raster order (the
 * stable lexsort). When full, the lowest one is dropped. */
static int insert_candidate(int count, float value, int row, int col)
{
    int at = count, i;
    while (at > 0 && s_cand[at - 1].value < value) {
        at--;
    }
    if (at >= PG_MAX_CANDIDATES) {
        return count;
    }
    if (count == PG_MAX_CANDIDATES) {
        count--;
    }
    for (i = count; i > at; i--) {
        s_cand[i] = s_cand[i - 1]; /* a struct copy: cheaper than memmove's call for a few entries */
    }
    s_cand[at].value = value;
    s_cand[at].row = (uint8_t)row;
    s_cand[at].col = (uint8_t)col;
    s_cand[at].suppressed = 0;
    return count + 1;
}

/* Sub-cell offset along one axis of a peak at `pos` of `size` cells, whose values are at
 * cell(src, line + (pos + i) * step); *gain receives the fitted log-parabola's rise at the offset. */
static float refine(const pg_source *src, int line, int step, int pos, int size, float centre, float *gain)
{
    float near, far, a2, b, t;
    int direction = 0;
    *gain = 0.0f;
    if (size < 3) {
        return 0.0f;
    }
    if (pos == 0) {
        direction = 1;
    } else if (pos == size - 1) {
        direction = -1;
    }
    if (direction == 0) {
        near = floored_log(cell(src, line + (pos - 1) * step));
        far = floored_log(cell(src, line + (pos + 1) * step));
        a2 = (near - centre) + (far - centre);
        b = (far - near) * 0.5f;
    } else {
        near = floored_log(cell(src, line + (pos + direction) * step));
        far = floored_log(cell(src, line + (pos + 2 * direction) * step));
        a2 = (centre - (near + near)) + far;
        b = (near - centre) - a2 * 0.5f;
    }
    if (!(a2 < 0.0f)) {
        return 0.0f;
    }
    t = -b / a2;
    t = t < -0.5f ? -0.5f : (t > 0.5f ? 0.5f : t);
    *gain = b * t + (a2 * 0.5f) * (t * t);
    return direction < 0 ? -t : t;
}

/* Cell i of an accumulator map (already >= the threshold's accumulator) inserted into the candidates when it is
 * a local maximum as is_candidate's rule on floats: > left and upper neighbours, >= right and lower ones. */
static int int_candidate(float inv_scale, const int32_t *acc, int i, int h, int w, int count)
{
    const int32_t *at = acc + i;
    const int r = i / w, c = i - r * w;
    float v;
    /* (float)a * inv_scale never decreases with a, so a cell whose accumulator is not above its left or upper
     * neighbour's is not above it as a float either: rejected exactly, without converting. */
    if ((c > 0 && at[0] <= at[-1]) || (r > 0 && at[0] <= at[-w])) {
        return count;
    }
    v = (float)at[0] * inv_scale; /* then the exact test on the values */
    if ((c > 0 && !(v > (float)at[-1] * inv_scale)) || (c < w - 1 && !(v >= (float)at[1] * inv_scale)) ||
        (r > 0 && !(v > (float)at[-w] * inv_scale)) || (r < h - 1 && !(v >= (float)at[w] * inv_scale))) {
        return count;
    }
    return insert_candidate(count, v, r, c);
}

/* The candidates of one accumulator map: four cells a turn, each compared with the threshold's accumulator by a
 * saturated difference (its sign is the difference's), the four signs tested at once; the cells at or above it
 * go to int_candidate in raster order. Returns the number of candidates. */
#if defined(__GNUC__)
__attribute__((noinline)) /* a function of its own: the loop keeps its registers */
#endif
static int scan_int(const int32_t *acc, int32_t limit, float inv_scale, int h, int w)
{
    const int cells = h * w;
    int i, count = 0;
    for (i = 0; i + 4 <= cells; i += 4) {
        const int32_t d0 = pg_qsub(acc[i], limit), d1 = pg_qsub(acc[i + 1], limit), d2 = pg_qsub(acc[i + 2], limit),
                      d3 = pg_qsub(acc[i + 3], limit);
        if ((d0 & d1 & d2 & d3) < 0) {
            continue;
        }
        if (d0 >= 0) {
            count = int_candidate(inv_scale, acc, i, h, w, count);
        }
        if (d1 >= 0) {
            count = int_candidate(inv_scale, acc, i + 1, h, w, count);
        }
        if (d2 >= 0) {
            count = int_candidate(inv_scale, acc, i + 2, h, w, count);
        }
        if (d3 >= 0) {
            count = int_candidate(inv_scale, acc, i + 3, h, w, count);
        }
    }
    for (; i < cells; i++) {
        if (acc[i] >= limit) {
            count = int_candidate(inv_scale, acc, i, h, w, count);
        }
    }
    return count;
}

static void find_peaks(const pg_source *heatmaps, int k, int h, int w, const pg_config *cfg)
{
    const int base = k * h * w, cells = h * w;
    const float threshold = cfg->peak_threshold, stride = (float)cfg->stride;
    const float radius_sq = cfg->nms_radius * cfg->nms_radius;
    int count = 0, kept = 0, i, j;
    float v;
    /* The scan: most cells are below the threshold and are passed over four at a time, by a float compare (a
     * NaN is not below it and goes to the exact test) or, for accumulators, by an integer one. */
    if (heatmaps->values != NULL) {
        const float *map = heatmaps->values + base;
        for (i = 0; i < cells; i++) {
            while (cells - i >= 4 && map[i] < threshold && map[i + 1] < threshold && map[i + 2] < threshold &&
                   map[i + 3] < threshold) {
                i += 4;
            }
            if (i < cells && (v = map[i]) >= threshold) {
                const float *at = map + i;
                const int r = i / w, c = i - r * w;
                if ((c > 0 && !(v > at[-1])) || (c < w - 1 && !(v >= at[1])) || (r > 0 && !(v > at[-w])) ||
                    (r < h - 1 && !(v >= at[w]))) {
                    continue; /* as is_candidate, on the float map directly */
                }
                count = insert_candidate(count, v, r, c);
            }
        }
    } else {
        count = scan_int(heatmaps->acc + base, heatmaps->acc_threshold, heatmaps->inv_scale, h, w);
    }
    /* Refine every candidate (Python refines all before suppressing), then suppress in order. */
    for (i = 0; i < count; i++) {
        pg_candidate *cand = &s_cand[i];
        const float centre = floored_log(cand->value);
        float gain_x, gain_y;
        const float tx = refine(heatmaps, base + cand->row * w, 1, cand->col, w, centre, &gain_x);
        const float ty = refine(heatmaps, base + cand->col, w, cand->row, h, centre, &gain_y);
        cand->x = (((float)cand->col + 0.5f) + tx) * stride;
        cand->y = (((float)cand->row + 0.5f) + ty) * stride;
        cand->score = fast_exp((centre + gain_x) + gain_y);
    }
    for (i = 0; i < count && kept < PG_MAX_PEAKS_PER_KEYPOINT; i++) {
        if (s_cand[i].suppressed) {
            continue;
        }
        s_peaks[k][kept].x = s_cand[i].x;
        s_peaks[k][kept].y = s_cand[i].y;
        s_peaks[k][kept].score = s_cand[i].score;
        kept++;
        for (j = i + 1; j < count; j++) {
            const float dx = s_cand[j].x - s_cand[i].x, dy = s_cand[j].y - s_cand[i].y;
            if (dx * dx + dy * dy < radius_sq) {
                s_cand[j].suppressed = 1;
            }
        }
    }
    s_npeaks[k] = kept;
}

/* ---- 2. limbs (grid_limbs / _pair_affinities / _bilinear / _match_one_to_one) ------------------- */

/* Bilinear value of map m at cell i with its right (dc) and lower (dr) neighbours: ((1 - fy) * top + fy *
 * bottom), top = (1 - fx) * v00 + fx * v01 (grid_decode._bilinear). */
#define PG_BILINEAR(m)                                                                                          \
    (gy_ * (gx_ * (float)(m)[i] + fx * (float)(m)[i + dc]) +                                                    \
     fy * (gx_ * (float)(m)[i + dr] + fx * (float)(m)[i + dr + dc]))

/* Limb scoring constants shared by all limbs of one decode. */
typedef struct {
    float t[PG_MAX_PAF_SAMPLES];       /* s / (samples - 1), as float32 */
    uint8_t order[PG_MAX_PAF_SAMPLES]; /* samples from the middle outwards (sample_order in Python) */
    float t_ordered[PG_MAX_PAF_SAMPLES]; /* t in visiting order: t[order[s]] */
    int min_support;             /* fewest supporting samples with support / samples > paf_min_ratio */
    int max_misses;              /* samples - min_support: one more miss and the pair cannot pass */
} pg_limb_constants;

static void limb_constants(const pg_config *cfg, pg_limb_constants *lc)
{
    const int samples = cfg->paf_samples;
    int s;
    for (s = 0; s < samples; s++) {
        /* insertion by (|2s - (samples - 1)|, s): the middle first, where a wrong pair leaves the field */
        const int key = 2 * s - (samples - 1) < 0 ? (samples - 1) - 2 * s : 2 * s - (samples - 1);
        int at = s;
        while (at > 0) {
            const int prev = lc->order[at - 1];
            const int prev_key = 2 * prev - (samples - 1) < 0 ? (samples - 1) - 2 * prev : 2 * prev - (samples - 1);
            if (prev_key <= key) {
                break;
            }
            lc->order[at] = lc->order[at - 1];
            at--;
        }
        lc->order[at] = (uint8_t)s;
        lc->t[s] = (float)s / (float)(samples - 1);
    }
    for (s = 0; s < samples; s++) {
        lc->t_ordered[s] = lc->t[lc->order[s]];
    }
    /* The float32 ratio test is monotonic in the count: find its threshold once. */
    for (lc->min_support = 0; lc->min_support <= samples; lc->min_support++) {
        if ((float)lc->min_support / (float)samples > cfg->paf_min_ratio) {
            break;
        }
    }
    lc->max_misses = samples - lc->min_support;
}

/* Sampling geometry of one limb's pairs. */
typedef struct {
    int h, w, samples, max_c0, max_r0;
    float max_gx, max_gy, inv_stride, min_score, inv_scale;
    uint32_t max_gx_bits, max_gy_bits; /* float_bits(max_gx), float_bits(max_gy) */
} pg_geometry;

#if defined(__GNUC__)
#define PG_INLINE static inline __attribute__((always_inline))
#else
#define PG_INLINE static
#endif

/* Affinity of the pair from -> to and whether it passes (grid_decode._pair_affinities). Inlined twice, for
 * float maps (field_x, field_y) and for accumulators (acc_x, acc_y), so that each sampling loop is specialised. */
PG_INLINE int score_pair(const pg_peak *from, const pg_peak *to, const float *field_x, const float *field_y,
                         const int32_t *acc_x, const int32_t *acc_y, const pg_geometry *g, const pg_limb_constants *lc,
                         float *affinity_out)
{
    int s;
    const float dx = to->x - from->x, dy = to->y - from->y;
    const float length = sqrtf(dx * dx + dy * dy);
    const float safe = length > 0.0f ? length : 1.0f;
    const float ux = dx / safe, uy = dy / safe;
    float total = 0.0f;
    int support = 0, misses = 0, ok = length > 0.0f;
    /* in grid units: cell centres at integers */
    const float gx0 = from->x * g->inv_stride - 0.5f, gy0 = from->y * g->inv_stride - 0.5f;
    const float gdx = dx * g->inv_stride, gdy = dy * g->inv_stride;
    /* Both ends inside [0, w - 1) x [0, h - 1) in grid units: so is every sample (rounding is
     * monotonic), the clamps below change nothing and the right and lower cells exist. */
    const float gx1 = gx0 + gdx, gy1 = gy0 + gdy;
    /* Tested on the bits: non-negative floats order as their bit patterns, and negative ones (-0.0 included, which
     * then takes the clamped path to the same values) and NaN compare above every finite positive one. */
    const int inside = (float_bits(gx0) < g->max_gx_bits) & (float_bits(gx1) < g->max_gx_bits) &
                       (float_bits(gy0) < g->max_gy_bits) & (float_bits(gy1) < g->max_gy_bits);
    for (s = 0; s < g->samples && ok; s++) { /* ok: a zero-length pair samples nothing */
        const float t = lc->t_ordered[s];
        float gx = gx0 + t * gdx, gy = gy0 + t * gdy;
        float fx, fy, gx_, gy_, vx, vy, projection;
        int c0, r0, i, dc = 1, dr = g->w;
        if (inside) {
            c0 = (int)gx;
            r0 = (int)gy;
        } else {
            gx = gx < 0.0f ? 0.0f : (gx > g->max_gx ? g->max_gx : gx);
            gy = gy < 0.0f ? 0.0f : (gy > g->max_gy ? g->max_gy : gy);
            c0 = (int)gx; /* floor: gx >= 0 */
            r0 = (int)gy;
            c0 = c0 < g->max_c0 ? c0 : g->max_c0;
            r0 = r0 < g->max_r0 ? r0 : g->max_r0;
            dc = c0 + 1 < g->w ? 1 : 0;
            dr = r0 + 1 < g->h ? g->w : 0;
        }
        fx = gx - (float)c0;
        fy = gy - (float)r0;
        gx_ = 1.0f - fx;
        gy_ = 1.0f - fy;
        i = r0 * g->w + c0;
        /* bilinear: ((1 - fy) * top + fy * bottom), top = (1 - fx) * v00 + fx * v01 */
        if (field_x != NULL) {
            vx = PG_BILINEAR(field_x);
            vy = PG_BILINEAR(field_y);
        } else {
            /* Scaling by 1 / scale after the arithmetic is exact for power-of-two scales (no rounding
             * at a power of two): the same float32 as interpolating acc x (1 / scale). */
            vx = PG_BILINEAR(acc_x) * g->inv_scale;
            vy = PG_BILINEAR(acc_y) * g->inv_scale;
        }
        projection = vx * ux + vy * uy;
        if (projection > g->min_score) {
            total = total + projection;
            support++;
        } else if (++misses > lc->max_misses) {
            ok = 0; /* even if every later sample supports it, the pair cannot pass */
            break;
        }
    }
    {
        const float affinity = total / (float)(support > 0 ? support : 1);
        *affinity_out = affinity;
        return ok && affinity > 0.0f && support >= lc->min_support;
    }
}

static void score_limb(int limb, const pg_source *pafs, int h, int w, const pg_config *cfg,
                       const pg_limb_constants *lc, const int *first_id)
{
    const int a = PG_LIMBS[limb][0], b = PG_LIMBS[limb][1];
    const int na = s_npeaks[a], nb = s_npeaks[b], samples = cfg->paf_samples;
    pg_geometry geo;
    uint8_t row_used[PG_MAX_PEAKS_PER_KEYPOINT], col_used[PG_MAX_PEAKS_PER_KEYPOINT];
    const float *field_x = NULL, *field_y = NULL;
    const int32_t *acc_x = NULL, *acc_y = NULL;
    int p, q, n = 0, passed = 0;
    s_nconn[limb] = 0;
    geo.h = h;
    geo.w = w;
    geo.samples = samples;
    geo.max_c0 = w - 2 > 0 ? w - 2 : 0;
    geo.max_r0 = h - 2 > 0 ? h - 2 : 0;
    geo.max_gx = (float)(w - 1);
    geo.max_gy = (float)(h - 1);
    geo.max_gx_bits = float_bits(geo.max_gx);
    geo.max_gy_bits = float_bits(geo.max_gy);
    geo.inv_stride = 1.0f / (float)cfg->stride;
    geo.min_score = cfg->paf_min_score;
    geo.inv_scale = pafs->inv_scale;
    if (na == 0 || nb == 0) {
        return;
    }
    if (pafs->values != NULL) {
        field_x = pafs->values + 2 * limb * h * w;
        field_y = field_x + h * w;
    } else {
        acc_x = pafs->acc + 2 * limb * h * w;
        acc_y = acc_x + h * w;
    }
    /* Only the pairs that pass are kept, in row-major order (the matching's tie order). */
    for (p = 0; p < na; p++) {
        for (q = 0; q < nb; q++) {
            float affinity;
            int ok;
            if (field_x != NULL) { /* two copies of the sampling loop, each without a per-sample type test */
                ok = score_pair(&s_peaks[a][p], &s_peaks[b][q], field_x, field_y, NULL, NULL, &geo, lc, &affinity);
            } else {
                ok = score_pair(&s_peaks[a][p], &s_peaks[b][q], NULL, NULL, acc_x, acc_y, &geo, lc, &affinity);
            }
            if (ok) {
                s_pair_affinity[passed] = affinity;
                s_pair_index[passed] = (pg_pair_index)(p * nb + q);
                passed++;
            }
        }
    }
    /* Greedy one-to-one matching by descending affinity, ties in row-major order: each round takes the first
     * highest of the passed pairs whose ends are both free. */
    for (p = 0; p < na; p++) {
        row_used[p] = 0;
    }
    for (q = 0; q < nb; q++) {
        col_used[q] = 0;
    }
    for (;;) {
        int best = -1, k;
        for (k = 0; k < passed; k++) {
            const int i = s_pair_index[k];
            if (!row_used[i / nb] && !col_used[i % nb] && (best < 0 || s_pair_affinity[k] > s_pair_affinity[best])) {
                best = k;
            }
        }
        if (best < 0) {
            break;
        }
        p = s_pair_index[best] / nb;
        q = s_pair_index[best] % nb;
        row_used[p] = col_used[q] = 1;
        s_conn[limb][n].from = (int16_t)(first_id[a] + p);
        s_conn[limb][n].to = (int16_t)(first_id[b] + q);
        s_conn[limb][n].affinity = s_pair_affinity[best];
        n++;
    }
    s_nconn[limb] = n;
}

/* ---- 4b. grouping: pose_group.h, shared with the upsampled decoder ----------------------------------------- */

#define PGRP_SCORE float
#define PGRP_COUNT int16_t
#define PGRP_PERSON pg_person
#define PGRP_CONNECTION pg_connection
#define PGRP_PEAK pg_peak
#define PGRP_POSE pg_pose
#define PGRP_CONFIG pg_config
#define PGRP_NO_PEAK PG_NO_PEAK
#define PGRP_NUM_KEYPOINTS PG_NUM_KEYPOINTS
#define PGRP_NUM_LIMBS PG_NUM_LIMBS
#define PGRP_MAX_PEOPLE PG_MAX_PEOPLE
#define PGRP_NUM_REDUNDANT_LIMBS PG_NUM_REDUNDANT_LIMBS
#define PGRP_LIMBS PG_LIMBS
#define PGRP_GROUPING_ORDER PG_GROUPING_ORDER
#define PGRP_REDUNDANT_LIMBS PG_REDUNDANT_LIMBS
#include "pose_group.h"

/* ---- decode ------------------------------------------------------------------------------------- */

void pg_default_config(pg_config *cfg, int input_size)
{
    cfg->stride = 8;
    cfg->peak_threshold = 0.1f;
    cfg->nms_radius = (float)((double)(6 * input_size) / 368.0); /* np.float32 of Python's float */
    cfg->paf_samples = 5; /* DecodeConfig's for the grid decoder (GRID_PAF_SAMPLES) */
    cfg->paf_min_score = 0.05f;
    cfg->paf_min_ratio = 0.8f;
    cfg->min_keypoints = 3;
    cfg->min_mean_score = 0.2f;
}

static int check_arguments(int h, int w, const pg_config *cfg, const pg_pose *poses, int max_poses)
{
    if (cfg == NULL || max_poses < 0 || (poses == NULL && max_poses > 0)) {
        return PG_ERR_ARGUMENT;
    }
    if (h < 1 || w < 1 || h > PG_MAX_MAP_SIDE || w > PG_MAX_MAP_SIDE) {
        return PG_ERR_SIZE;
    }
    if (cfg->stride < 1 || cfg->paf_samples < 2 || cfg->paf_samples > PG_MAX_PAF_SAMPLES ||
        !(cfg->nms_radius >= 0.0f)) {
        return PG_ERR_CONFIG;
    }
    return 0;
}

static int decode(const pg_source *heatmaps, const pg_source *pafs, int h, int w, const pg_config *cfg,
                  pg_pose *poses, int max_poses)
{
    int first_id[PG_NUM_KEYPOINTS];
    pg_limb_constants lc;
    int k, limb, total = 0;
    for (k = 0; k < PG_NUM_KEYPOINTS; k++) {
        find_peaks(heatmaps, k, h, w, cfg);
        first_id[k] = total;
        total += s_npeaks[k];
    }
    PG_MARK(0);
    limb_constants(cfg, &lc);
    for (limb = 0; limb < PG_NUM_LIMBS; limb++) {
        score_limb(limb, pafs, h, w, cfg, &lc, first_id);
    }
    PG_MARK(1);
    return group_people(total, first_id, cfg, poses, max_poses);
}

int pg_decode(const float *heatmaps, const float *pafs, int h, int w, const pg_config *cfg, pg_pose *poses,
              int max_poses)
{
    pg_source hm, pf;
    int error = check_arguments(h, w, cfg, poses, max_poses);
    if (error == 0 && (heatmaps == NULL || pafs == NULL)) {
        error = PG_ERR_ARGUMENT;
    }
    if (error != 0) {
        return error;
    }
    hm.values = heatmaps;
    hm.acc = NULL;
    hm.inv_scale = 1.0f;
    hm.acc_threshold = INT32_MAX;
    pf.values = pafs;
    pf.acc = NULL;
    pf.inv_scale = 1.0f;
    pf.acc_threshold = INT32_MAX;
    return decode(&hm, &pf, h, w, cfg, poses, max_poses);
}

/* The smallest accumulator a with (float)a * inv_scale >= threshold ((float)a * inv_scale never decreases with a,
 * so acc >= it exactly when its value passes); INT32_MAX when nothing passes. */
static int32_t accumulator_threshold(float threshold, float inv_scale)
{
    const float guess = threshold / inv_scale;
    int32_t a;
    if (!(guess > -2.0e9f)) {
        a = INT32_MIN;
    } else if (!(guess < 2.0e9f)) {
        return INT32_MAX;
    } else {
        a = (int32_t)guess - 2 - (guess > 1.6e7f || guess < -1.6e7f ? 512 : 0); /* (float)a rounds above 2^24 */
    }
    while (a < INT32_MAX && !((float)a * inv_scale >= threshold)) {
        a++;
    }
    return a;
}

int pg_decode_int32(const int32_t *heatmap_acc, float heatmap_scale, const int32_t *paf_acc, float paf_scale,
                    int h, int w, const pg_config *cfg, pg_pose *poses, int max_poses)
{
    pg_source hm, pf;
    int error = check_arguments(h, w, cfg, poses, max_poses);
    if (error == 0 && (heatmap_acc == NULL || paf_acc == NULL || !(heatmap_scale > 0.0f) || !(paf_scale > 0.0f) ||
                       !isfinite(heatmap_scale) || !isfinite(paf_scale))) {
        error = PG_ERR_ARGUMENT;
    }
    if (error != 0) {
        return error;
    }
    hm.values = NULL;
    hm.acc = heatmap_acc;
    hm.inv_scale = 1.0f / heatmap_scale;
    hm.acc_threshold = accumulator_threshold(cfg->peak_threshold, hm.inv_scale);
    pf.values = NULL;
    pf.acc = paf_acc;
    pf.inv_scale = 1.0f / paf_scale;
    pf.acc_threshold = INT32_MAX;
    return decode(&hm, &pf, h, w, cfg, poses, max_poses);
}
