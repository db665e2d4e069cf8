"""Linkers: a saved model put on a backend over a set of records, in the backend's dialect.

Splink writes a model's SQL in the dialect of the backend that trained it; a linker scores
pairs only on that backend, and the model's settings are translated for reading elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from splink import Linker

from cdi_pipeline.lib.matching.backends import backend_of, register_input, to_polars


def trained_dialect(settings_dict: dict[str, Any]) -> str:
    """SQL dialect a saved model's settings are written in: the backend that trained it.

    Splink writes the model's SQL in its backend's dialect (`"col"` on DuckDB, `` `col` `` on
    Spark); the backend names of `matching.backend` are the same strings.
    """
    return str(settings_dict.get("sql_dialect", "duckdb"))


def settings_in_dialect(settings_dict: dict[str, Any], dialect: str) -> dict[str, Any]:
    """A saved model's settings with its SQL transpiled (sqlglot) to another dialect.

    Only for reading the model (charts, parameters): function names Splink spells per backend
    (`jaro_winkler` on Spark, `jaro_winkler_similarity` on DuckDB) are not mapped, so pairs
    must not be scored with the result; `linker_for` refuses it.
    """
    import sqlglot

    settings = json.loads(json.dumps(settings_dict))
    source = trained_dialect(settings)
    if source == dialect:
        return settings

    def translate(sql: str) -> str:
        return sql if sql.strip().upper() == "ELSE" else sqlglot.transpile(
            sql, read=source, write=dialect
        )[0]

    for comparison in settings.get("comparisons", []):
        for level in comparison["comparison_levels"]:
            level["sql_condition"] = translate(level["sql_condition"])
    for rule in settings.get("blocking_rules_to_generate_predictions", []):
        if isinstance(rule, dict):
            rule["blocking_rule"] = translate(rule["blocking_rule"])
            rule["sql_dialect"] = dialect
    settings["sql_dialect"] = dialect
    return settings


def linker_for(
    db_api: Any,
    frame: pl.DataFrame,
    settings_dict: dict[str, Any],
    tf_tables: dict[str, pl.DataFrame] | None = None,
    name_suffix: str = "",
    link_to: pl.DataFrame | None = None,
) -> Linker:
    """A linker over `frame` with a saved model's settings and frozen term frequencies.

    A backend registers each table name once: a second linker on the same backend needs
    its own `name_suffix`. With `link_to`, only pairs across the two frames are compared
    (Splink's link_only): new records against existing ones, not existing among themselves.
    """
    backend = backend_of(db_api)
    if trained_dialect(settings_dict) != backend:
        # DuckDB SQL runs on Spark without error but wrongly ("col" is a string there).
        raise ValueError(
            f"the model was trained on the {trained_dialect(settings_dict)} backend and its "
            f"SQL is written for it, not for {backend}: retrain it on {backend} "
            "(materialise matching/model; it retrains when the backend changed)"
        )
    settings = json.loads(json.dumps(settings_dict))
    inputs = register_input(db_api, frame, table_name=f"cdi_match_input{name_suffix}")
    if link_to is not None:
        settings["link_type"] = "link_only"
        inputs = [inputs, register_input(db_api, link_to,
                                         table_name=f"cdi_match_existing{name_suffix}")]
    linker = Linker(inputs, settings)
    for col, table in (tf_tables or {}).items():
        registered = register_input(db_api, table, table_name=f"cdi_tf_{col}{name_suffix}")
        linker.table_management.register_term_frequency_lookup(registered, col)
    return linker


def row_count(linker: Linker, table: Any) -> int:
    """Rows of a table on the linker's backend (a Splink dataframe)."""
    return int(to_polars(linker.misc.query_sql(
        f"SELECT count(*) AS n FROM {table.physical_name}")).get_column("n")[0])


def column_names(linker: Linker, table: Any) -> list[str]:
    """Columns of a table on the linker's backend (a Splink dataframe)."""
    return linker.misc.query_sql(
        f"SELECT * FROM {table.physical_name} LIMIT 0"
    ).as_pyarrow_table().column_names
