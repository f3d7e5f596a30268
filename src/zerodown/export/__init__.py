"""Exporters: the same zerodown.yaml, written for another system (pure: spec in, documents out)."""
