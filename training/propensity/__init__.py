"""User-item propensity models (NCF family, Wide & Deep, baselines)."""
