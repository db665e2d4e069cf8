"""Golden layer: survivorship with field lineage, behavioural features, the customer 360."""
