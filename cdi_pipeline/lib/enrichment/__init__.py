"""Enrichment layer: reference data behind an interface, and what it adds to each customer."""
