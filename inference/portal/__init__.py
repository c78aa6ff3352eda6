"""MLapp: the prediction portal served by the same `serve` process (create / invoke / check)."""
