"""posenas.search."""
