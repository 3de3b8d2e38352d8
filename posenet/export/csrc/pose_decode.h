/*
 * pose_decode: standalone C99 multi-person pose decoder for posenas networks.
 *
 * A port of posenet/decode.py (``decode`` with ``DecodeConfig.for_input``) for a microcontroller:
 * no malloc, no state carried between calls, all work memory in static buffers whose sizes are
 * fixed at compile time by the PD_MAX_* limits below (override them with -D). The static buffers
 * make it non-reentrant: one pd_decode call at a time.
 *
 * Input: the network's stride-s maps, channel-major (C, h, w): 19 heatmaps (18 body keypoints,
 * channel 18 = background, ignored) and 38 part affinity fields (limb i owns channels 2i = x and
 * 2i + 1 = y). Output: people, each 18 (x, y, score) keypoints in input pixels (pixel i covers
 * [i, i + 1), centre i + 0.5), sorted by descending score.
 *
 * The algorithm is Python's, step by step (posenet/decode.py has the reasons for each choice):
 *  1. every map is continued two cells beyond each border, rows then columns; the 18 keypoint
 *     heatmaps as Gaussians (a parabola in log space through the three outermost cells, values
 *     floored at 1e-3 before the log, capped by the linear continuation or the border value, and
 *     linear where the parabola is not downward), the PAFs linearly. Only Python's default
 *     ``extrapolate_borders=True`` is implemented;
 *  2. cubic upsampling by ``upsample`` with OpenCV's INTER_CUBIC semantics (Keys kernel, A = -0.75,
 *     destination pixel j samples source (j + 0.5) / upsample - 0.5, horizontal pass then vertical,
 *     replicated border), in float32 and in cv2's order of operations, then the two extension cells
 *     are cropped off again. A heatmap channel is upsampled whole, one channel at a time; a PAF is
 *     evaluated only at the pixels that limb scoring samples, by the same arithmetic;
 *  3. keypoint candidates: pixels >= peak_threshold, > left and upper neighbours, >= right and lower
 *     ones; a tie to the right (below) moves the peak half a pixel right (down); sorted by
 *     descending score (ties in row-major order) and thinned by greedy suppression within nms_radius;
 *  4. every candidate pair of each limb is scored on paf_samples points (nearest upsampled pixel)
 *     and matched greedily one-to-one by descending affinity; connections are joined into people in
 *     PD_GROUPING_ORDER (the shoulder-ear limbs PD_REDUNDANT_LIMBS only fill free slots; two partial
 *     people with disjoint slots merge); people with fewer than min_keypoints keypoints or a mean
 *     score below min_mean_score are dropped.
 *
 * Equivalence with Python: the upsampled PAFs are bit-identical to those of decode.py's cv2.resize
 * (one resize of 56 float channels: horizontal taps summed left to right, vertical ones as
 * r0*b0 + (r1*b1 + (r2*b2 + r3*b3)); checked with OpenCV 5.0 on x86-64), and so are the upsampled
 * heatmaps except within 1.5 cells of the border, where the Gaussian extension's logf/expf may
 * differ from NumPy's SIMD log/exp by an ulp. Such an ulp can move a peak there by half an
 * upsampled pixel where two pixels tie. Limb affinities are summed in NumPy's pairwise order,
 * ratios and person scores are computed in double, as Python's floats. Build with IEEE single
 * precision float arithmetic (no x87 excess precision) and without floating-point contraction
 * (gcc's default for -std=c99; add -ffp-contract=off where the compiler would fuse multiply-adds,
 * e.g. for ARM with -std=gnu99), or the values drift from Python's by rounding.
 *
 * Deviations, only when a static limit is reached: more than PD_MAX_CANDIDATES local maxima of a
 * keypoint keep the highest-scoring ones; more than PD_MAX_PEAKS_PER_KEYPOINT peaks after
 * suppression keep the highest-scoring ones; a connection that would start person number
 * PD_MAX_PEOPLE + 1 is ignored. Python has no such limits.
 */
#ifndef POSE_DECODE_H
#define POSE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#define PD_NUM_KEYPOINTS 18 /* body keypoints; heatmap 18 = background, ignored */
#define PD_NUM_HEATMAPS 19
#define PD_NUM_PAFS 38
#define PD_NUM_LIMBS 19
#define PD_NUM_REDUNDANT_LIMBS 2
#define PD_BORDER_CELLS 2 /* cells added on each side before upsampling */

/* Static limits (override with -D). */
#ifndef PD_MAX_MAP_H
#define PD_MAX_MAP_H 16 /* map rows: a 128-px input at stride 8 */
#endif
#ifndef PD_MAX_MAP_W
#define PD_MAX_MAP_W 16 /* map columns */
#endif
#ifndef PD_MAX_UPSAMPLE
#define PD_MAX_UPSAMPLE 8 /* largest cfg->upsample */
#endif
#ifndef PD_MAX_CANDIDATES
#define PD_MAX_CANDIDATES 128 /* local maxima of one keypoint kept before suppression */
#endif
#ifndef PD_MAX_PEAKS_PER_KEYPOINT
#define PD_MAX_PEAKS_PER_KEYPOINT 32 /* peaks of one keypoint kept after suppression */
#endif
#ifndef PD_MAX_PEOPLE
#define PD_MAX_PEOPLE 32 /* people under construction (merged halves included) */
#endif
#ifndef PD_MAX_PAF_SAMPLES
#define PD_MAX_PAF_SAMPLES 64 /* largest cfg->paf_samples */
#endif

/*
 * Static work buffers of pose_decode.c, in bytes, with EH = PD_MAX_MAP_H + 4, EW = PD_MAX_MAP_W + 4,
 * UH = PD_MAX_MAP_H * PD_MAX_UPSAMPLE, UW = PD_MAX_MAP_W * PD_MAX_UPSAMPLE, P = PD_MAX_PEAKS_PER_KEYPOINT
 * (values for the defaults in brackets; pd_static_bytes() returns the total as compiled):
 *   border-extended maps, 2 channels     2 * EH * EW * 4               [  3200]
 *   horizontal pass of one channel       EH * UW * 4                   [ 10240]
 *   upsampled heatmap, one channel       UH * UW * 4                   [ 65536]
 *   cubic taps of columns and rows       (UW + UH) * 24                [  6144]
 *   candidates of one keypoint           PD_MAX_CANDIDATES * 9         [  1152]
 *   peaks (x, y, score) and counts       18 * P * 12 + 18 * 4          [  6984]
 *   pair scores of one limb              P * P * 5                     [  5120]
 *   connections and counts               19 * P * 8 + 19 * 4           [  4940]
 *   peak owners                          18 * P * 2                    [  1152]
 *   people under construction            PD_MAX_PEOPLE * 56            [  1792]
 *   output order of people               PD_MAX_PEOPLE * 4             [   128]
 * 106388 bytes (104 KiB) in all with the defaults, 62% of it the upsampled heatmap.
 * The stack use is small (under 1 KB).
 */

/* Error codes (negative returns of pd_decode / pd_decode_int32). */
#define PD_ERR_ARGUMENT (-1) /* NULL pointer, max_poses < 0, or a scale that is not finite and > 0 */
#define PD_ERR_SIZE (-2)     /* h or w < 1, h > PD_MAX_MAP_H or w > PD_MAX_MAP_W */
#define PD_ERR_CONFIG (-3)   /* upsample outside 1..PD_MAX_UPSAMPLE, stride < 1, paf_samples outside
                                2..PD_MAX_PAF_SAMPLES, or nms_radius < 0 */

/*
 * Decoder constants, as DecodeConfig. Thresholds that Python compares against float32 map values
 * are float; those it compares in double (distances, ratios, person scores) are double, so that
 * the same numbers give the same decisions.
 */
typedef struct {
    int upsample;          /* upsampling factor of the maps before peak search (8 = stride) */
    int stride;            /* input pixels per map cell */
    float peak_threshold;  /* heatmap values below this are never keypoints */
    double nms_radius;     /* a peak closer than this (input px) to a higher one is dropped */
    int paf_samples;       /* points sampled along a candidate limb, both ends included */
    float paf_min_score;   /* a sample supports a limb when the PAF projection exceeds this */
    double paf_min_ratio;  /* a limb needs more than this fraction of supporting samples */
    int min_keypoints;     /* people with fewer keypoints are dropped */
    double min_mean_score; /* people whose score per keypoint is lower are dropped */
} pd_config;

typedef struct {
    float x, y, score; /* input pixels and heatmap value; (0, 0, 0) = missing */
} pd_keypoint;

typedef struct {
    pd_keypoint keypoints[PD_NUM_KEYPOINTS]; /* body-18 order */
    float score; /* sum of keypoint scores and of the affinities of the limbs that joined them */
    int count;   /* keypoints that entered through those limbs */
} pd_pose;

/* Limb i = (from, to) body keypoints, PAF channels 2i and 2i + 1 (posenet.keypoints.LIMBS). */
extern const uint8_t PD_LIMBS[PD_NUM_LIMBS][2];
/* Order in which limbs are assembled into people (posenet.keypoints.GROUPING_ORDER). */
extern const uint8_t PD_GROUPING_ORDER[PD_NUM_LIMBS];
/* Shoulder-ear limbs that only complete people (posenet.keypoints.REDUNDANT_LIMBS). */
extern const uint8_t PD_REDUNDANT_LIMBS[PD_NUM_REDUNDANT_LIMBS];

/* DecodeConfig.for_input(input_size): the defaults, with nms_radius = 6 * input_size / 368. */
void pd_default_config(pd_config *cfg, int input_size);

/*
 * Decode float maps: heatmaps (19, h, w) and pafs (38, h, w), channel-major. Writes at most
 * max_poses people (the highest-scoring ones) to poses, sorted by descending score (ties in the
 * order the people were started). Returns the number written, or a PD_ERR_* code.
 */
int pd_decode(const float *heatmaps, const float *pafs, int h, int w, const pd_config *cfg,
              pd_pose *poses, int max_poses);

/*
 * As pd_decode, from the network's raw 32-bit wide outputs: value = acc / scale, with
 * scale = 128 * 2^(bits - 1) (16384 for 8-bit weights). Each value is converted as
 * (float)acc / scale, which for a power-of-two scale is exactly float32(acc / scale).
 */
int pd_decode_int32(const int32_t *heatmap_acc, float heatmap_scale, const int32_t *paf_acc,
                    float paf_scale, int h, int w, const pd_config *cfg, pd_pose *poses,
                    int max_poses);

/* Bytes of static work memory that this build of pose_decode.c holds (the table above). */
size_t pd_static_bytes(void);

#endif /* POSE_DECODE_H */
