"""Quality layer: field profiles of the cleaned records."""
