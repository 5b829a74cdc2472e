"""Settings split by environment: base (shared), dev (one-command local run), test, prod."""
