"""posenas.space."""
