"""Steward-edited files (overrides, erasure requests) share one reader."""

from pathlib import Path

import pytest

from cdi_pipeline.lib.governance.erasure import ErasureRequestError, read_requests
from cdi_pipeline.lib.governance.files import read_governed_csv


class StewardFileError(ValueError):
    pass


def test_values_are_stripped_text_with_editor_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,b\n 007 , x\n,y \n", encoding="utf-8")
    frame = read_governed_csv(path, ("a", "b"), ("c",), StewardFileError)
    assert frame.to_dicts() == [{"line": 2, "a": "007", "b": "x", "c": None},
                                {"line": 3, "a": None, "b": "y", "c": None}]


def test_absent_file_is_none_and_a_missing_column_names_file_and_header(tmp_path: Path) -> None:
    assert read_governed_csv(tmp_path / "none.csv", ("a",), (), StewardFileError) is None
    path = tmp_path / "f.csv"
    path.write_text("a\n1\n", encoding="utf-8")
    with pytest.raises(StewardFileError, match=r"f\.csv: missing column\(s\) \['b'\]; "
                                               r"expected header a,b \(and optionally c\)"):
        read_governed_csv(path, ("a", "b"), ("c",), StewardFileError)


def test_erasure_requests_report_a_wrong_header_through_their_own_error(tmp_path: Path) -> None:
    path = tmp_path / "erasure_requests.csv"
    path.write_text("request_id,value\nR1,a@b.nl\n", encoding="utf-8")
    with pytest.raises(ErasureRequestError, match=r"missing column\(s\).*identifier_type"):
        read_requests(path)
