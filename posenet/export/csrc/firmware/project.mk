
# ---- posenas: the grid pose decoder and the firmware main (appended by posenas export) ----
# The decoder rounds as its Python twin (posenet/pose/grid_decode.py) only without fused multiply-adds.
PROJ_CFLAGS += -ffp-contract=off
# izer's generated main.c lives in izer/ and is compiled through izer_sample.c (main renamed).
IPATH += . izer
