/*
 * pose_decode_main: host tool around pose_decode.c. Decodes network maps stored in a binary file
 * and prints the people as text, for checking the C decoder against posenet.decode on a PC.
 *
 *   cc -std=c99 -O2 pose_decode.c pose_decode_main.c -lm -o pose_decode
 *   pose_decode [-i INPUT_SIZE] [-u UPSAMPLE] [-n MAX_POSES] [-q HEATMAP_SCALE PAF_SCALE] H W FILE
 *   pose_decode --tables
 *
 * FILE holds the heatmaps (19, H, W) then the PAFs (38, H, W), channel-major, native-endian
 * float32; with -q, int32 accumulators decoded as acc / scale (pd_decode_int32). INPUT_SIZE
 * (default 128) sets the suppression radius as DecodeConfig.for_input; UPSAMPLE overrides the
 * default 8. Output:
 *
 *   poses N
 *   pose I score S count C       (N times)
 *   kp K X Y SCORE               (18 lines per pose, (0, 0, 0) = missing)
 *
 * or "error CODE" (exit status 1) when pd_decode fails; --tables prints the limb tables.
 * The tool allocates its input with malloc; the decoder itself does not allocate.
 */
#include "pose_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int print_tables(void)
{
    int i;
    printf("limbs");
    for (i = 0; i < PD_NUM_LIMBS; i++) {
        printf(" %d,%d", PD_LIMBS[i][0], PD_LIMBS[i][1]);
    }
    printf("\ngrouping_order");
    for (i = 0; i < PD_NUM_LIMBS; i++) {
        printf(" %d", PD_GROUPING_ORDER[i]);
    }
    printf("\nredundant_limbs");
    for (i = 0; i < PD_NUM_REDUNDANT_LIMBS; i++) {
        printf(" %d", PD_REDUNDANT_LIMBS[i]);
    }
    printf("\nstatic_bytes %lu\n", (unsigned long)pd_static_bytes());
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: pose_decode [-i INPUT_SIZE] [-u UPSAMPLE] [-n MAX_POSES] "
                    "[-q HEATMAP_SCALE PAF_SCALE] H W FILE\n       pose_decode --tables\n");
    return 2;
}

int main(int argc, char **argv)
{
    int input_size = 128, upsample = 0, max_poses = 64, quantized = 0, h, w, n, i, k, arg = 1;
    float heatmap_scale = 1.0f, paf_scale = 1.0f;
    size_t plane, count;
    void *data;
    pd_pose *poses;
    pd_config cfg;
    FILE *file;

    if (argc == 2 && strcmp(argv[1], "--tables") == 0) {
        return print_tables();
    }
    while (arg < argc && argv[arg][0] == '-') {
        if (strcmp(argv[arg], "-i") == 0 && arg + 1 < argc) {
            input_size = atoi(argv[arg + 1]);
            arg += 2;
        } else if (strcmp(argv[arg], "-u") == 0 && arg + 1 < argc) {
            upsample = atoi(argv[arg + 1]);
            arg += 2;
        } else if (strcmp(argv[arg], "-n") == 0 && arg + 1 < argc) {
            max_poses = atoi(argv[arg + 1]);
            arg += 2;
        } else if (strcmp(argv[arg], "-q") == 0 && arg + 2 < argc) {
            quantized = 1;
            heatmap_scale = (float)atof(argv[arg + 1]);
            paf_scale = (float)atof(argv[arg + 2]);
            arg += 3;
        } else {
            return usage();
        }
    }
    if (argc - arg != 3) {
        return usage();
    }
    h = atoi(argv[arg]);
    w = atoi(argv[arg + 1]);
    pd_default_config(&cfg, input_size);
    if (upsample != 0) {
        cfg.upsample = upsample;
    }
    /* Sizes are checked by the decoder; only what cannot be read is refused here. */
    plane = (h > 0 && w > 0) ? (size_t)h * (size_t)w : 0;
    count = (size_t)(PD_NUM_HEATMAPS + PD_NUM_PAFS) * plane;
    data = calloc(count > 0 ? count : 1, 4);
    poses = calloc((size_t)(max_poses > 0 ? max_poses : 1), sizeof *poses);
    file = fopen(argv[arg + 2], "rb");
    if (data == NULL || poses == NULL || file == NULL) {
        fprintf(stderr, "pose_decode: cannot read %s\n", argv[arg + 2]);
        return 2;
    }
    if (fread(data, 4, count, file) != count) {
        fprintf(stderr, "pose_decode: %s is shorter than %lu values\n", argv[arg + 2], (unsigned long)count);
        return 2;
    }
    fclose(file);
    if (quantized) {
        const int32_t *acc = (const int32_t *)data;
        n = pd_decode_int32(acc, heatmap_scale, acc + PD_NUM_HEATMAPS * plane, paf_scale,
                            h, w, &cfg, poses, max_poses);
    } else {
        const float *maps = (const float *)data;
        n = pd_decode(maps, maps + PD_NUM_HEATMAPS * plane, h, w, &cfg, poses,
                      max_poses);
    }
    if (n < 0) {
        printf("error %d\n", n);
        return 1;
    }
    printf("poses %d\n", n);
    for (i = 0; i < n; i++) {
        printf("pose %d score %.9g count %d\n", i, poses[i].score, poses[i].count);
        for (k = 0; k < PD_NUM_KEYPOINTS; k++) {
            const pd_keypoint *kp = &poses[i].keypoints[k];
            printf("kp %d %.9g %.9g %.9g\n", k, kp->x, kp->y, kp->score);
        }
    }
    free(data);
    free(poses);
    return 0;
}
