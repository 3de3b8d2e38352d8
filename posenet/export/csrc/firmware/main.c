/*
 * posenas firmware for the MAX78000 (MSDK): runs the CNN that ai8x-synthesis generated on its sample input,
 * unloads both output heads into posenas' buffer (sized for both, see posenas_app.h), decodes the people with
 * the grid decoder on the Cortex-M4 and prints them with the CNN and decoder times on the console UART.
 *
 * izer's generated main.c is kept in izer/ and compiled through izer_sample.c with its main() renamed, for its
 * load_input() (the sample input into the CNN's data memory) and cnn_time. Written from the generated API that
 * ai8x-synthesis documents (cnn_enable ... cnn_unload) and the MSDK's peripheral drivers; not run on a board by
 * posenas' tests, which compile and run posenas_app.c and pose_grid.c for the Cortex-M4 under QEMU.
 */
#include <stdint.h>
#include <stdio.h>

#include "cnn.h"
#include "mxc.h"
#include "posenas_app.h"

void load_input(void);            /* izer's, from izer/main.c */
extern volatile uint32_t cnn_time; /* microseconds, set by izer's CNN interrupt (ai8xize.py --timer 0) */

int main(void)
{
    const pg_pose *poses;
    uint32_t decode_us;
    int count;

    MXC_ICC_Enable(MXC_ICC0); /* instruction cache: the decoder runs from flash */
    MXC_SYS_Clock_Select(MXC_SYS_CLOCK_IPO); /* 100 MHz */
    SystemCoreClockUpdate();
    printf("\nposenas %s on the MAX78000 (%d x %d input)\n", POSENAS_NETWORK_NAME, POSENAS_INPUT_SIZE,
           POSENAS_INPUT_SIZE);

    cnn_enable(MXC_S_GCR_PCLKDIV_CNNCLKSEL_PCLK, MXC_S_GCR_PCLKDIV_CNNCLKDIV_DIV1); /* CNN at 50 MHz */
    cnn_init();
    cnn_load_weights();
    cnn_load_bias();
    cnn_configure();
    load_input();
    cnn_time = 0;
    cnn_start();
    while (cnn_time == 0) {
        MXC_LP_EnterSleepMode(); /* until the CNN interrupt */
    }
    cnn_unload(posenas_output); /* both heads: the buffer holds POSENAS_OUTPUT_WORDS */
    cnn_disable();

    MXC_TMR_SW_Start(MXC_TMR1);
    count = posenas_decode(posenas_output, &poses);
    decode_us = MXC_TMR_SW_Stop(MXC_TMR1);
    posenas_print(poses, count, cnn_time, decode_us);
    return 0;
}
