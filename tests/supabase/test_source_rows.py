"""Rows of a reply from Supabase (outside attack: a malformed claim reply crashed the
service with a traceback; a row whose id was text became a second local coin)."""

from __future__ import annotations

import pytest

from moonshot.errors import TransientError
from moonshot.supabase.source_supabase import well_formed


def test_rows_with_integer_ids_pass():
    rows = [{"id": 1, "ticker": "A"}, {"id": 2}]
    assert well_formed(rows, "claim") == rows
    assert well_formed(None, "claim") == []
    assert well_formed([], "claim") == []


@pytest.mark.parametrize(
    "data, said",
    [
        ({"id": 1}, "dict, not a list of rows"),
        ("oops", "str, not a list of rows"),
        ([{"ticker": "A"}], "without an integer id: 'None'"),
        ([{"id": "abc"}], "without an integer id: 'abc'"),
        ([{"id": True}], "without an integer id"),
        (["row"], "without an integer id"),
    ],
)
def test_a_malformed_reply_is_a_transient_source_error_in_one_line(data, said):
    with pytest.raises(TransientError) as info:
        well_formed(data, "claim")
    assert said in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("Supabase claim: a malformed reply")
