"""The one place the pipeline reaches into Splink's internals, for what Splink offers no
public way to do.

Each access is one small named function, checked against SPLINK_CHECKED_VERSION:
`cdi_pipeline_tests/test_matching_splink_private.py` fails when another Splink version is
installed, so an upgrade re-checks these functions before anything else.
"""

from __future__ import annotations

from typing import Any

# The Splink version the functions below were checked against.
SPLINK_CHECKED_VERSION = "5.0.0"


def offline_chart_html(spec: dict[str, Any], title: str) -> str:
    """A Vega-Lite chart as a complete HTML page with Vega, Vega-Lite and Vega-Embed inline,
    so it opens offline (no CDN).

    Splink bundles those libraries and renders its own charts this way
    (`SplinkChart.to_html(inline=True)`), but renders only its own chart types publicly.
    """
    from splink.internals.html_utils import chart_html

    return chart_html(spec, inline=True, fullhtml=True).replace(
        "<title>Splink chart</title>", f"<title>{title}</title>"
    )
