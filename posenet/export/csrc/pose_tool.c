/*
 * pose_tool: the host tool around both decoders. Decodes network maps stored in a binary file and prints
 * the people as text, for checking a C decoder against its Python twin on a PC (posenet.pose.decode for the
 * upsampled decoder, pose_decode.c; posenet.pose.grid_decode for the microcontroller's grid decoder,
 * pose_grid.c).
 *
 *   cc -std=c99 -O2 -ffp-contract=off pose_decode.c pose_grid.c pose_tool.c -lm -o pose_tool
 *   pose_tool [-d upsampled|grid] [-i INPUT_SIZE] [-u UPSAMPLE] [-n MAX_POSES] [-q HEATMAP_SCALE PAF_SCALE] H W FILE
 *   pose_tool [-d upsampled|grid] --tables
 *
 * -d picks the decoder (default upsampled). FILE holds the heatmaps (19, H, W) then the PAFs (38, H, W),
 * channel-major, native-endian float32; with -q, int32 accumulators decoded as acc / scale (the decoders'
 * *_decode_int32). INPUT_SIZE (default 128) sets the suppression radius as DecodeConfig.for_input;
 * UPSAMPLE (upsampled decoder only) overrides the default 8. Output:
 *
 *   poses N
 *   pose I score S count C       (N times)
 *   kp K X Y SCORE               (18 lines per pose, (0, 0, 0) = missing)
 *
 * or "error CODE" (exit status 1) when the decoder fails; --tables prints the limb tables and the decoder's
 * static bytes. The tool allocates its input with malloc; the decoders themselves do not allocate.
 */
#include "pose_decode.h"
#include "pose_grid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The two decoders share their tables (pose_group.h groups with either); a build that disagreed would be
 * refused here rather than print one decoder's tables for the other. */
typedef char pose_tool_same_shape[(PD_NUM_KEYPOINTS == PG_NUM_KEYPOINTS && PD_NUM_LIMBS == PG_NUM_LIMBS &&
                                   PD_NUM_HEATMAPS == PG_NUM_HEATMAPS && PD_NUM_PAFS == PG_NUM_PAFS)
                                      ? 1
                                      : -1];

typedef struct {
    int grid; /* 0: upsampled (pose_decode.c), 1: grid (pose_grid.c) */
    int input_size, upsample, max_poses, quantized;
    float heatmap_scale, paf_scale;
} options;

static int print_tables(int grid)
{
    int i;
    printf("limbs");
    for (i = 0; i < PD_NUM_LIMBS; i++) {
        printf(" %d,%d", grid ? PG_LIMBS[i][0] : PD_LIMBS[i][0], grid ? PG_LIMBS[i][1] : PD_LIMBS[i][1]);
    }
    printf("\ngrouping_order");
    for (i = 0; i < PD_NUM_LIMBS; i++) {
        printf(" %d", grid ? PG_GROUPING_ORDER[i] : PD_GROUPING_ORDER[i]);
    }
    printf("\nredundant_limbs");
    for (i = 0; i < (grid ? PG_NUM_REDUNDANT_LIMBS : PD_NUM_REDUNDANT_LIMBS); i++) {
        printf(" %d", grid ? PG_REDUNDANT_LIMBS[i] : PD_REDUNDANT_LIMBS[i]);
    }
    printf("\nstatic_bytes %lu\n", (unsigned long)(grid ? pg_static_bytes() : pd_static_bytes()));
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: pose_tool [-d upsampled|grid] [-i INPUT_SIZE] [-u UPSAMPLE] [-n MAX_POSES] "
                    "[-q HEATMAP_SCALE PAF_SCALE] H W FILE\n       pose_tool [-d upsampled|grid] --tables\n");
    return 2;
}

static void print_pose(int i, float score, int count, const float (*keypoints)[3])
{
    int k;
    printf("pose %d score %.9g count %d\n", i, score, count);
    for (k = 0; k < PD_NUM_KEYPOINTS; k++) {
        printf("kp %d %.9g %.9g %.9g\n", k, keypoints[k][0], keypoints[k][1], keypoints[k][2]);
    }
}

/* Decode with the upsampled decoder and print; the number of people, or the decoder's error code. */
static int run_upsampled(const options *o, void *data, int h, int w, size_t plane)
{
    pd_config cfg;
    pd_pose *poses = calloc((size_t)(o->max_poses > 0 ? o->max_poses : 1), sizeof *poses);
    int n, i, k;
    if (poses == NULL) {
        fprintf(stderr, "pose_tool: out of memory for %d poses\n", o->max_poses);
        exit(2);
    }
    pd_default_config(&cfg, o->input_size);
    if (o->upsample != 0) {
        cfg.upsample = o->upsample;
    }
    if (o->quantized) {
        const int32_t *acc = (const int32_t *)data;
        n = pd_decode_int32(acc, o->heatmap_scale, acc + PD_NUM_HEATMAPS * plane, o->paf_scale, h, w, &cfg, poses,
                            o->max_poses);
    } else {
        const float *maps = (const float *)data;
        n = pd_decode(maps, maps + PD_NUM_HEATMAPS * plane, h, w, &cfg, poses, o->max_poses);
    }
    if (n >= 0) {
        printf("poses %d\n", n);
    }
    for (i = 0; i < n; i++) {
        float keypoints[PD_NUM_KEYPOINTS][3];
        for (k = 0; k < PD_NUM_KEYPOINTS; k++) {
            const pd_keypoint *kp = &poses[i].keypoints[k];
            keypoints[k][0] = kp->x;
            keypoints[k][1] = kp->y;
            keypoints[k][2] = kp->score;
        }
        print_pose(i, poses[i].score, poses[i].count, (const float (*)[3])keypoints);
    }
    free(poses);
    return n;
}

/* The same with the grid decoder. */
static int run_grid(const options *o, void *data, int h, int w, size_t plane)
{
    pg_config cfg;
    pg_pose *poses = calloc((size_t)(o->max_poses > 0 ? o->max_poses : 1), sizeof *poses);
    int n, i, k;
    if (poses == NULL) {
        fprintf(stderr, "pose_tool: out of memory for %d poses\n", o->max_poses);
        exit(2);
    }
    pg_default_config(&cfg, o->input_size);
    if (o->quantized) {
        const int32_t *acc = (const int32_t *)data;
        n = pg_decode_int32(acc, o->heatmap_scale, acc + PG_NUM_HEATMAPS * plane, o->paf_scale, h, w, &cfg, poses,
                            o->max_poses);
    } else {
        const float *maps = (const float *)data;
        n = pg_decode(maps, maps + PG_NUM_HEATMAPS * plane, h, w, &cfg, poses, o->max_poses);
    }
    if (n >= 0) {
        printf("poses %d\n", n);
    }
    for (i = 0; i < n; i++) {
        float keypoints[PG_NUM_KEYPOINTS][3];
        for (k = 0; k < PG_NUM_KEYPOINTS; k++) {
            const pg_keypoint *kp = &poses[i].keypoints[k];
            keypoints[k][0] = kp->x;
            keypoints[k][1] = kp->y;
            keypoints[k][2] = kp->score;
        }
        print_pose(i, poses[i].score, poses[i].count, (const float (*)[3])keypoints);
    }
    free(poses);
    return n;
}

int main(int argc, char **argv)
{
    options o = {0, 128, 0, 64, 0, 1.0f, 1.0f};
    int h, w, n, arg = 1;
    size_t plane, count;
    void *data;
    FILE *file;

    while (arg < argc && argv[arg][0] == '-') {
        if (strcmp(argv[arg], "-d") == 0 && arg + 1 < argc) {
            if (strcmp(argv[arg + 1], "grid") != 0 && strcmp(argv[arg + 1], "upsampled") != 0) {
                return usage();
            }
            o.grid = strcmp(argv[arg + 1], "grid") == 0;
            arg += 2;
        } else if (strcmp(argv[arg], "--tables") == 0 && arg + 1 == argc) {
            return print_tables(o.grid);
        } else if (strcmp(argv[arg], "-i") == 0 && arg + 1 < argc) {
            o.input_size = atoi(argv[arg + 1]);
            arg += 2;
        } else if (strcmp(argv[arg], "-u") == 0 && arg + 1 < argc) {
            o.upsample = atoi(argv[arg + 1]);
            arg += 2;
        } else if (strcmp(argv[arg], "-n") == 0 && arg + 1 < argc) {
            o.max_poses = atoi(argv[arg + 1]);
            arg += 2;
        } else if (strcmp(argv[arg], "-q") == 0 && arg + 2 < argc) {
            o.quantized = 1;
            o.heatmap_scale = (float)atof(argv[arg + 1]);
            o.paf_scale = (float)atof(argv[arg + 2]);
            arg += 3;
        } else {
            return usage();
        }
    }
    if (argc - arg != 3 || (o.grid && o.upsample != 0)) {
        return usage();
    }
    h = atoi(argv[arg]);
    w = atoi(argv[arg + 1]);
    /* Sizes are checked by the decoder; only what cannot be read is refused here. */
    plane = (h > 0 && w > 0) ? (size_t)h * (size_t)w : 0;
    count = (size_t)(PD_NUM_HEATMAPS + PD_NUM_PAFS) * plane;
    data = calloc(count > 0 ? count : 1, 4);
    file = fopen(argv[arg + 2], "rb");
    if (data == NULL || file == NULL) {
        fprintf(stderr, "pose_tool: cannot read %s\n", argv[arg + 2]);
        return 2;
    }
    if (fread(data, 4, count, file) != count) {
        fprintf(stderr, "pose_tool: %s is shorter than %lu values\n", argv[arg + 2], (unsigned long)count);
        return 2;
    }
    fclose(file);
    n = o.grid ? run_grid(&o, data, h, w, plane) : run_upsampled(&o, data, h, w, plane);
    free(data);
    if (n < 0) {
        printf("error %d\n", n);
        return 1;
    }
    return 0;
}
