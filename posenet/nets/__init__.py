"""Networks: hardware-aware layers, models built from specs, weights and checkpoints, teachers,
distillation, training, and export to the chip."""
