"""Probabilistic record matching with Splink: model, rules, clusters and stable ids."""
