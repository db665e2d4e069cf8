"""Governance layer: erasure requests, suppression, and the steward-kept files."""
