"""posenas.posenet."""
