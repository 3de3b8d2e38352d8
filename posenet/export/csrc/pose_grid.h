/*
 * pose_grid: the microcontroller's multi-person pose decoder for posenas networks (C99).
 *
 * The C twin of posenet/pose/grid_decode.py (``decode`` with ``DecodeConfig(decoder="grid")``): peaks and
 * limb integrals on the network's stride-s grid itself, without upsampling the maps, so that it fits a
 * Cortex-M4 beside the application: no malloc, no state carried between calls, a few KB of static
 * buffers fixed at compile time by the PG_MAX_* limits below (override them with -D), single-precision
 * float arithmetic only (the M4F's FPU). The static buffers make it non-reentrant: one call at a time.
 *
 * Input: the network's stride-s maps, channel-major (C, h, w): 19 heatmaps (18 body keypoints, channel
 * 18 = background, ignored) and 38 part affinity fields (limb i owns channels 2i = x and 2i + 1 = y),
 * as float32, or as the accelerator's 32-bit accumulators with their scale. Output: people, each 18
 * (x, y, score) keypoints in input pixels (pixel i covers [i, i + 1), cell j's centre is at
 * stride * (j + 0.5)), sorted by descending score.
 *
 * Steps (grid_decode.py has the reasons):
 *  1. peaks: cells >= peak_threshold, > left and upper neighbours, >= right and lower ones; ordered by
 *     descending cell value (ties in raster order); each refined along x and y by the vertex of the
 *     parabola through the logs (values floored at 1e-3) of the cell and its two neighbours (at a
 *     border: the cell and the two inside it), clamped to half a cell, 0 where the parabola is not
 *     downward; score = the fitted maximum; greedy suppression within nms_radius in that order;
 *  2. limbs: each candidate pair sampled at paf_samples points, the PAF bilinearly interpolated between
 *     the four cell centres around each point (clamped to the outermost centres); a sample supports the
 *     limb when the projection exceeds paf_min_score; affinity = mean supporting projection; a pair
 *     passes with more than paf_min_ratio supporting samples (scoring stops as soon as it cannot);
 *     greedy one-to-one matching by descending affinity (ties in row-major order);
 *  3. grouping in PG_GROUPING_ORDER (the shoulder-ear limbs only fill free slots; two partial people
 *     with disjoint slots merge); people with fewer than min_keypoints keypoints or a mean score below
 *     min_mean_score are dropped.
 *
 * Equivalence with Python: the same float32 operations in the same order, and log and exp computed by the
 * same polynomials (grid_decode.floored_log / fast_exp; no libm beyond sqrtf, which is correctly rounded),
 * so keypoints and their scores are bit for bit Python's; person scores are summed in float here, in
 * double in Python. Build without floating-point contraction (-ffp-contract=off; gcc for ARM fuses
 * multiply-adds by default with -std=gnu99). Samples of a pair are visited from its middle outwards
 * (grid_decode.sample_order) and summed in that order.
 * Sample points are divided by the stride as a multiplication by 1 / stride (in Python too).
 * pg_decode_int32 multiplies by 1 / scale (PAFs: after interpolating the accumulators), which equals
 * Python's acc / scale for power-of-two scales (the accelerator's: 128 * 2^(bits - 1)), and finds heatmap
 * cells above the threshold by comparing the accumulators with the threshold's accumulator.
 *
 * Deviations, only when a static limit is reached: more than PG_MAX_CANDIDATES local maxima of a
 * keypoint keep the highest cells; more than PG_MAX_PEAKS_PER_KEYPOINT peaks after suppression keep the
 * first ones; a connection that would start person number PG_MAX_PEOPLE + 1 is ignored.
 */
#ifndef POSE_GRID_H
#define POSE_GRID_H

#include <stddef.h>
#include <stdint.h>

#define PG_NUM_KEYPOINTS 18 /* body keypoints; heatmap 18 = background, ignored */
#define PG_NUM_HEATMAPS 19
#define PG_NUM_PAFS 38
#define PG_NUM_LIMBS 19
#define PG_NUM_REDUNDANT_LIMBS 2

/* Static limits (override with -D). The maps, float or int32, are read where they are. */
#ifndef PG_MAX_CANDIDATES
#define PG_MAX_CANDIDATES 32 /* local maxima of one keypoint kept before suppression */
#endif
#ifndef PG_MAX_PEAKS_PER_KEYPOINT
#define PG_MAX_PEAKS_PER_KEYPOINT 16 /* peaks of one keypoint kept after suppression */
#endif
#ifndef PG_MAX_PEOPLE
#define PG_MAX_PEOPLE 20 /* people under construction (merged halves included) */
#endif
#ifndef PG_MAX_MAP_SIDE
#define PG_MAX_MAP_SIDE 255 /* largest h and w (cell indices are stored in a byte) */
#endif
#ifndef PG_MAX_PAF_SAMPLES
#define PG_MAX_PAF_SAMPLES 32 /* largest cfg->paf_samples */
#endif

/*
 * Static work buffers of pose_grid.c, in bytes, with C = PG_MAX_CANDIDATES, P = PG_MAX_PEAKS_PER_KEYPOINT,
 * N = PG_MAX_PEOPLE (values for the defaults in brackets; pg_static_bytes() returns the total as compiled):
 *   candidates of one keypoint           C * 20                         [   640]
 *   peaks (x, y, score) and counts       18 * P * 12 + 18 * 4           [  3528]
 *   passed pairs of one limb             P * P * 6                      [  1536]
 *   connections and counts               19 * P * 8 + 19 * 4            [  2508]
 *   peak owners                          18 * P * 2                     [   576]
 *   people under construction            N * 44                         [   880]
 *   output order of people               N * 4                          [    80]
 * 9748 bytes (9.5 KiB) in all with the defaults; stack use is under 200 bytes.
 */

/* Error codes (negative returns of pg_decode / pg_decode_int32). */
#define PG_ERR_ARGUMENT (-1) /* NULL pointer, max_poses < 0, or a scale that is not finite and > 0 */
#define PG_ERR_SIZE (-2)     /* h or w < 1 or > PG_MAX_MAP_SIDE */
#define PG_ERR_CONFIG (-3)   /* stride < 1, paf_samples outside 2..PG_MAX_PAF_SAMPLES, nms_radius < 0 or NaN */

/* Decoder constants, as DecodeConfig, all single precision. */
typedef struct {
    int stride;           /* input pixels per map cell */
    float peak_threshold; /* heatmap values below this are never keypoints */
    float nms_radius;     /* a peak closer than this (input px) to an earlier one is dropped */
    int paf_samples;      /* points sampled along a candidate limb, both ends included */
    float paf_min_score;  /* a sample supports a limb when the PAF projection exceeds this */
    float paf_min_ratio;  /* a limb needs more than this fraction of supporting samples */
    int min_keypoints;    /* people with fewer keypoints are dropped */
    float min_mean_score; /* people whose score per keypoint is lower are dropped */
} pg_config;

typedef struct {
    float x, y, score; /* input pixels and fitted heatmap maximum; (0, 0, 0) = missing */
} pg_keypoint;

typedef struct {
    pg_keypoint keypoints[PG_NUM_KEYPOINTS]; /* body-18 order */
    float score; /* sum of keypoint scores and of the affinities of the limbs that joined them */
    int count;   /* keypoints that entered through those limbs */
} pg_pose;

/* Limb i = (from, to) body keypoints, PAF channels 2i and 2i + 1 (posenet.keypoints.LIMBS). */
extern const uint8_t PG_LIMBS[PG_NUM_LIMBS][2];
/* Order in which limbs are assembled into people (posenet.keypoints.GROUPING_ORDER). */
extern const uint8_t PG_GROUPING_ORDER[PG_NUM_LIMBS];
/* Shoulder-ear limbs that only complete people (posenet.keypoints.REDUNDANT_LIMBS). */
extern const uint8_t PG_REDUNDANT_LIMBS[PG_NUM_REDUNDANT_LIMBS];

/* DecodeConfig.for_input(input_size, decoder="grid"): the defaults, with nms_radius = 6 * input_size / 368 and
 * paf_samples = 5 (GRID_PAF_SAMPLES; the upsampling decoder samples 10). */
void pg_default_config(pg_config *cfg, int input_size);

/*
 * Decode float maps: heatmaps (19, h, w) and pafs (38, h, w), channel-major. Writes at most max_poses
 * people (the highest-scoring ones) to poses, sorted by descending score (ties in the order the people
 * were started). Returns the number written, or a PG_ERR_* code.
 */
int pg_decode(const float *heatmaps, const float *pafs, int h, int w, const pg_config *cfg, pg_pose *poses,
              int max_poses);

/* As pg_decode, from the network's raw 32-bit outputs: value = acc * (1 / scale). */
int pg_decode_int32(const int32_t *heatmap_acc, float heatmap_scale, const int32_t *paf_acc, float paf_scale,
                    int h, int w, const pg_config *cfg, pg_pose *poses, int max_poses);

/* Bytes of static work memory that this build of pose_grid.c holds (the table above). */
size_t pg_static_bytes(void);

#endif /* POSE_GRID_H */
