"""Raw layer: read each registered source file as it is, with lineage, or reject it whole."""
