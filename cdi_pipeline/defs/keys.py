"""Every asset key of the code location, by layer. A key is `[layer, table]`: the layer is
the key prefix, the Dagster group, the DuckDB schema and the `defs/<layer>/` folder that
defines the asset; the table is the DuckDB table it writes (`raw/<source>` per source)."""

import dagster as dg


def raw_key(source: str) -> dg.AssetKey:
    """The raw table of one registered source."""
    return dg.AssetKey(["raw", source])


# cleaned
CUSTOMER_RECORDS = dg.AssetKey(["cleaned", "customer_records"])
ACTIVITIES = dg.AssetKey(["cleaned", "activities"])
QUARANTINE = dg.AssetKey(["cleaned", "quarantine"])

# quality
FIELD_PROFILE = dg.AssetKey(["quality", "field_profile"])

# matching
MODEL = dg.AssetKey(["matching", "model"])
PAIRS = dg.AssetKey(["matching", "pairs"])
REVIEW_QUEUE = dg.AssetKey(["matching", "review_queue"])
CLUSTERS = dg.AssetKey(["matching", "clusters"])
XREF = dg.AssetKey(["matching", "customer_xref"])
ID_HISTORY = dg.AssetKey(["matching", "id_history"])
ID_MAP = dg.AssetKey(["matching", "customer_id_map"])

# golden
CUSTOMERS = dg.AssetKey(["golden", "customers"])
FIELD_LINEAGE = dg.AssetKey(["golden", "field_lineage"])
CUSTOMER_FEATURES = dg.AssetKey(["golden", "customer_features"])
CUSTOMER_360 = dg.AssetKey(["golden", "customer_360"])

# segments
CUSTOMER_SEGMENTS = dg.AssetKey(["segments", "customer_segments"])
SEGMENT_SUMMARY = dg.AssetKey(["segments", "segment_summary"])
ACTIVATION_EXPORTS = dg.AssetKey(["segments", "activation_exports"])

# enrichment
CUSTOMER_ENRICHMENT = dg.AssetKey(["enrichment", "customer_enrichment"])
XREF_SNAPSHOTS = dg.AssetKey(["enrichment", "customer_xref_snapshots"])
CUSTOMER_SNAPSHOTS = dg.AssetKey(["enrichment", "customer_snapshots"])
SEGMENT_SNAPSHOTS = dg.AssetKey(["enrichment", "customer_segment_snapshots"])

# published
ANALYTICS = dg.AssetKey(["published", "analytics"])

# governance
SUPPRESSION_LIST = dg.AssetKey(["governance", "suppression_list"])
ERASURE_RECEIPTS = dg.AssetKey(["governance", "erasure_receipts"])
