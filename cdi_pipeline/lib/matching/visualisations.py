"""Visualisations: Splink's charts of the model in use and of the pairs it scored, as
self-contained HTML files under the warehouse's reports folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from cdi_pipeline.lib.matching.backends import BackendConfig, open_backend, to_polars
from cdi_pipeline.lib.matching.linkers import linker_for, row_count, settings_in_dialect
from cdi_pipeline.lib.matching.model_store import SavedModel

# Pairs the comparison viewer is built from; larger predictions are sampled down to it.
VIEWER_PAIRS = 100_000


def write_prediction_charts(
    linker: Any, predicted: Any, columns: list[str], charts_dir: Path
) -> dict[str, Path]:
    """Waterfall charts for sampled pairs and Splink's comparison viewer, as HTML.

    The viewer is built from at most VIEWER_PAIRS pairs (every n-th by weight): it shows
    which comparison patterns occur and examples of each, at a cost bounded however many
    pairs were scored.
    """
    charts_dir.mkdir(parents=True, exist_ok=True)
    pred = predicted.physical_name
    # Pairs ranked by weight on the keys alone: sorting the full prediction rows (every
    # compared value) would be the slowest part of the charts.
    ranked = linker.misc.query_sql(
        "SELECT unique_id_l, unique_id_r, row_number() OVER (ORDER BY match_weight, "
        f"unique_id_l, unique_id_r) AS _rank, count(*) OVER () AS _n FROM {pred}"
    )
    listed = ", ".join(f"p.{c}" for c in columns)

    def every_nth(n_expr: str) -> str:
        return (f"SELECT {listed} FROM {pred} p JOIN {ranked.physical_name} r ON "
                "p.unique_id_l = r.unique_id_l AND p.unique_id_r = r.unique_id_r "
                f"WHERE r._rank % {n_expr} = 0")

    # A spread of pairs from sure non-matches to sure matches, picked in the backend so
    # the full prediction never has to come to Python.
    sample = to_polars(linker.misc.query_sql(
        every_nth("greatest(CAST(r._n / 12 AS BIGINT), 1)") + " ORDER BY p.match_weight LIMIT 12"
    ))
    total = row_count(linker, predicted)
    out: dict[str, Path] = {}
    if sample.height:
        records = sample.to_dicts()
        chart = linker.visualisations.waterfall_chart(records, filter_nulls=True)
        path = charts_dir / "waterfall_sampled_pairs.html"
        path.write_text(chart.to_html(inline=True), encoding="utf-8")
        out["waterfall"] = path
        viewer = charts_dir / "comparison_viewer.html"
        shown = predicted
        if total > VIEWER_PAIRS:
            shown = linker.misc.query_sql(every_nth(str(-(-total // VIEWER_PAIRS))))
            # Splink's viewer SQL names its input by the prediction's template name.
            shown.templated_name = predicted.templated_name
        linker.visualisations.comparison_viewer_dashboard(
            shown, str(viewer), overwrite=True, num_example_rows=2,
            # Rare comparison vectors add size, not insight, on large runs.
            minimum_comparison_vector_count=5,
        )
        out["comparison_viewer"] = viewer
    return out


def write_model_charts(model: SavedModel, frame: pl.DataFrame, folder: Path) -> dict[str, Path]:
    """Match-weight and m/u charts of the model in use, as self-contained HTML."""
    target = folder / f"model_{model.version}"
    charts = {
        "match_weights": target / "match_weights.html",
        "m_u_parameters": target / "m_u_parameters.html",
    }
    if all(p.is_file() for p in charts.values()):
        return charts
    target.mkdir(parents=True, exist_ok=True)
    # The charts read only the settings, so a tiny in-memory DuckDB session is enough,
    # whichever backend trained the model (its SQL is transpiled to DuckDB's to be parsed).
    settings = settings_in_dialect(model.splink_settings, "duckdb")
    with open_backend(BackendConfig(temp_directory=folder / ".tmp")) as db_api:
        linker = linker_for(db_api, frame.head(10), settings)
        linker.visualisations.match_weights_chart().save(
            str(charts["match_weights"]), inline=True
        )
        linker.visualisations.m_u_parameters_chart().save(
            str(charts["m_u_parameters"]), inline=True
        )
    return charts
