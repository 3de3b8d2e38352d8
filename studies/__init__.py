"""Study configurations (YAML) shipped with posenas."""
