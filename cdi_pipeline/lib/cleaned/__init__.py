"""Cleaned layer: one canonical shape per record and per activity, with quarantine reasons."""
