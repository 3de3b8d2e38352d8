/*
 * app_main: the firmware's MSDK-free part (posenas_app.c, pose_grid.c) on QEMU's Cortex-M4 (mps2-an386), fed
 * with an export's expected 32-bit outputs (m4_output.c, generated) laid out as cnn_unload() writes them. Prints
 * the firmware's report, then the SysTick timing and the people in the bench format (see bench_main.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "posenas_app.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define SYST_MASK 0xFFFFFFu
#define CALIBRATION_LOOPS 1000000u

extern void initialise_monitor_handles(void);

#ifdef PG_PROFILE
/* SysTick at the end of each decoder phase (pose_grid.c's PG_MARK: peaks, limbs), printed as "phase I T ticks". */
static uint32_t phase_ticks[2];
void pg_profile_mark(int phase)
{
    phase_ticks[phase] = SYST_CVR;
}
#endif
extern const int32_t m4_output[POSENAS_OUTPUT_WORDS];

static void spin(uint32_t n)
{
    __asm volatile("1:\n\tsubs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

int main(void)
{
    const pg_pose *poses;
    uint32_t start, calibration, ticks;
    int n, i, k;
    initialise_monitor_handles();
    SYST_RVR = SYST_MASK;
    SYST_CVR = 0;
    SYST_CSR = 5;
    memcpy(posenas_output, m4_output, sizeof posenas_output); /* what cnn_unload() writes */
    start = SYST_CVR;
    spin(CALIBRATION_LOOPS);
    calibration = (start - SYST_CVR) & SYST_MASK;
    start = SYST_CVR;
    n = posenas_decode(posenas_output, &poses);
    ticks = (start - SYST_CVR) & SYST_MASK;
    /* microseconds at 100 MHz and one cycle per instruction, for the report's format only */
    posenas_print(poses, n, 0, (uint32_t)((uint64_t)ticks * 2u * CALIBRATION_LOOPS / calibration / 100u));
    printf("calibration %lu instructions %lu ticks\n", (unsigned long)(2u * CALIBRATION_LOOPS),
           (unsigned long)calibration);
    printf("decode %lu ticks\n", (unsigned long)ticks);
#ifdef PG_PROFILE
    printf("phase peaks %lu ticks\n", (unsigned long)((start - phase_ticks[0]) & SYST_MASK));
    printf("phase limbs %lu ticks\n", (unsigned long)((phase_ticks[0] - phase_ticks[1]) & SYST_MASK));
#endif
    if (n < 0) {
        printf("error %d\n", n);
        return 1;
    }
    printf("poses %d\n", n);
    for (i = 0; i < n; i++) {
        printf("pose %d score %.9g count %d\n", i, (double)poses[i].score, poses[i].count);
        for (k = 0; k < PG_NUM_KEYPOINTS; k++) {
            printf("kp %d %.9g %.9g %.9g\n", k, (double)poses[i].keypoints[k].x, (double)poses[i].keypoints[k].y,
                   (double)poses[i].keypoints[k].score);
        }
    }
    return 0;
}
