"""Probabilistic record matching with Splink: model, rules, clusters and stable ids.

Split by verb, as Splink's linker is:

- `input`: cleaned records read and prepared as the Splink input (`names`: name evidence
  from e-mails and misspellings; `blocking`: block-key caps and pair counts).
- `spec` and `comparisons`: which fields the model compares, blocks and trains on.
- `backends` and `linkers`: the Splink session (DuckDB or Spark) and a saved model on it.
- `training`, `sanity` and `model_store`: train, check, save and reuse a model; `model` is
  the step the model asset calls.
- `scoring`, `decisions` (with `rules` and `conflicts`), `clustering`, `ids` and `outputs`:
  one matching pass; `matching_pass` runs it and is the step the matching asset calls.
- `visualisations`, `tables`, `evaluation` and `incremental`: charts, table descriptions,
  accuracy scores, and matching a batch against existing customers.

Configuration: every step takes the registry's `matching:` section whole, the pydantic
`MatchingConfig` of `lib/registry.py`, rather than a copy of its fields. It is already
frozen and validated (ranges, the review band against the probability floor, training
rules against the input columns), each field is described once for the YAML user, and a
setting added there reaches every step without another signature to change. Settings that
are not the registry's (the warehouse's memory limit and threads, folders, the run id) are
passed beside it: `backends.BackendConfig` for the Splink session, keywords for the rest.
"""
