/*
 * ai8x-synthesis' generated main.c (kept unchanged in izer/), compiled here with its main() renamed so that
 * posenas' main.c is the program's: this unit supplies izer's load_input() and cnn_time. Its main() and its
 * one-head output buffer are never referenced, and the linker's --gc-sections drops them.
 */
#define main izer_generated_main
#include "izer/main.c"
