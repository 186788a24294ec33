"""Classify: routing policy files, the per-recipient decision, internal domains."""
