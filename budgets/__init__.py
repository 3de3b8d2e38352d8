"""posenas.budgets."""
