"""Set-wise polars standardisers for customer data (names, contact, address, dates, codes)."""

from cdi_pipeline.lib.standardise.address import standardise_address
from cdi_pipeline.lib.standardise.codes import (
    country_expr,
    standardise_country,
    standardise_gender,
)
from cdi_pipeline.lib.standardise.dates import parse_dates, parse_datetimes
from cdi_pipeline.lib.standardise.email import standardise_email
from cdi_pipeline.lib.standardise.names import standardise_names
from cdi_pipeline.lib.standardise.phone import standardise_phone
from cdi_pipeline.lib.standardise.text import fold_accents, squish, strip_control_chars

__all__ = [
    "country_expr",
    "fold_accents",
    "parse_dates",
    "parse_datetimes",
    "squish",
    "standardise_address",
    "standardise_country",
    "standardise_email",
    "standardise_gender",
    "standardise_names",
    "standardise_phone",
    "strip_control_chars",
]
