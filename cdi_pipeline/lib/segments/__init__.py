"""Segments layer: RFM, lifecycle, value and contactability segments, summary and exports."""
