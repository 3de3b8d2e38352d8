/* posenas_app.c: see posenas_app.h. */
#include "posenas_app.h"

#include <stdio.h>

uint32_t posenas_output[POSENAS_OUTPUT_WORDS];

static pg_pose s_poses[POSENAS_MAX_POSES];

static const char *const KEYPOINT_NAMES[PG_NUM_KEYPOINTS] = {POSENAS_KEYPOINT_NAMES};

int posenas_decode(const uint32_t *output, const pg_pose **poses)
{
    const int32_t *heatmaps = (const int32_t *)output;
    pg_config cfg;
    pg_default_config(&cfg, POSENAS_INPUT_SIZE);
    *poses = s_poses;
    return pg_decode_int32(heatmaps, POSENAS_HEATMAP_SCALE, heatmaps + POSENAS_HEATMAP_WORDS, POSENAS_PAF_SCALE,
                           POSENAS_MAP_H, POSENAS_MAP_W, &cfg, s_poses, POSENAS_MAX_POSES);
}

/* v >= 0 with one decimal: "12.3". */
static void print_tenths(const char *before, float v)
{
    const long tenths = (long)(v * 10.0f + 0.5f);
    printf("%s%ld.%ld", before, tenths / 10, tenths % 10);
}

void posenas_print(const pg_pose *poses, int count, uint32_t cnn_us, uint32_t decode_us)
{
    int i, k;
    if (count < 0) {
        printf("posenas: decoder error %d\n", count);
        return;
    }
    printf("posenas %s: %d people; CNN %lu us, decoder %lu us\n", POSENAS_NETWORK_NAME, count, (unsigned long)cnn_us,
           (unsigned long)decode_us);
    for (i = 0; i < count; i++) {
        printf("person %d: %d keypoints,", i, poses[i].count);
        print_tenths(" score ", poses[i].score);
        printf("\n");
        for (k = 0; k < PG_NUM_KEYPOINTS; k++) {
            const pg_keypoint *kp = &poses[i].keypoints[k];
            if (kp->score > 0.0f) {
                printf("  %-10s", KEYPOINT_NAMES[k]);
                print_tenths(" x ", kp->x);
                print_tenths(" y ", kp->y);
                printf(" (%d%%)\n", (int)(kp->score * 100.0f + 0.5f));
            }
        }
    }
}
