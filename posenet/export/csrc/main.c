/*
 * posenas host check: run the exported network on the sample input, compare both heads' 32-bit
 * outputs bit for bit with the values posenas' integer simulation computed, decode the poses.
 *
 *   ./posenas_host              check + decode, poses as JSON on stdout, PASS/FAIL on stderr;
 *                               exit 0 only when bit-exact
 *   ./posenas_host --repeat N   also time N inferences and print the mean time per image
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnn.h"
#include "network.h"
#include "pose_decode.h"
#include "sample.h"

static pd_pose poses[PD_MAX_PEOPLE];

static long compare(const char *what, const int32_t *got, const int32_t *expected, long count)
{
    long i, wrong = 0;
    for (i = 0; i < count; i++) {
        if (got[i] != expected[i]) {
            if (wrong == 0) {
                fprintf(stderr, "%s: first mismatch at %ld: got %ld, expected %ld\n", what, i, (long)got[i],
                        (long)expected[i]);
            }
            wrong++;
        }
    }
    return wrong;
}

static double seconds_now(void)
{
    return (double)clock() / CLOCKS_PER_SEC;
}

int main(int argc, char **argv)
{
    const cnn_layer *heat = &posenas_network.layers[POSENAS_HEATMAP_LAYER];
    const cnn_layer *paf = &posenas_network.layers[POSENAS_PAF_LAYER];
    long heat_count = (long)heat->out_channels * heat->out_h * heat->out_w;
    long paf_count = (long)paf->out_channels * paf->out_h * paf->out_w;
    long wrong, repeat = 0, r;
    pd_config config;
    int n, i, k;

    if (argc == 3 && strcmp(argv[1], "--repeat") == 0) repeat = atol(argv[2]);

    cnn_run(&posenas_network, posenas_sample_input);
    wrong = compare("heatmaps", heat->out32, posenas_expected_heatmaps, heat_count);
    wrong += compare("pafs", paf->out32, posenas_expected_pafs, paf_count);

    pd_default_config(&config, POSENAS_INPUT_SIZE);
    n = pd_decode_int32(heat->out32, POSENAS_HEATMAP_SCALE, paf->out32, POSENAS_PAF_SCALE, heat->out_h,
                        heat->out_w, &config, poses, PD_MAX_PEOPLE);

    printf("{\"network\": \"%s\", \"outputs\": %ld, \"mismatches\": %ld, \"poses\": [", POSENAS_NETWORK_NAME,
           heat_count + paf_count, wrong);
    for (i = 0; i < n; i++) {
        printf("%s\n  {\"score\": %.9g, \"count\": %d, \"keypoints\": [", i ? "," : "", poses[i].score,
               poses[i].count);
        for (k = 0; k < PD_NUM_KEYPOINTS; k++) {
            const pd_keypoint *p = &poses[i].keypoints[k];
            printf("%s[%.9g, %.9g, %.9g]", k ? ", " : "", p->x, p->y, p->score);
        }
        printf("]}");
    }
    printf("]");
    if (n < 0) printf(", \"decode_error\": %d", n);

    if (repeat > 0) {
        double start = seconds_now(), cnn_s, decode_s;
        for (r = 0; r < repeat; r++) cnn_run(&posenas_network, posenas_sample_input);
        cnn_s = (seconds_now() - start) / repeat;
        start = seconds_now();
        for (r = 0; r < repeat; r++) {
            pd_decode_int32(heat->out32, POSENAS_HEATMAP_SCALE, paf->out32, POSENAS_PAF_SCALE, heat->out_h,
                            heat->out_w, &config, poses, PD_MAX_PEOPLE);
        }
        decode_s = (seconds_now() - start) / repeat;
        printf(", \"repeat\": %ld, \"cnn_ms\": %.4f, \"decode_ms\": %.4f", repeat, 1e3 * cnn_s, 1e3 * decode_s);
    }
    printf("}\n");
    /* The verdict for a person at a terminal; stdout stays one JSON object for programs. */
    fprintf(stderr, "%s: %ld output values %s the integer simulation; %d people decoded\n",
            wrong == 0 && n >= 0 ? "PASS" : "FAIL", heat_count + paf_count,
            wrong == 0 ? "bit-exact with" : "DIFFERENT from", n);
    return wrong == 0 && n >= 0 ? 0 : 1;
}
