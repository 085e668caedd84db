"""The results table itself: a row the system check never ran after is "unchecked", and the total
never counts it as 0 data lost."""

from __future__ import annotations

from reliability_results import Results


def test_an_unchecked_row_is_not_summed_as_no_data_lost() -> None:
    results = Results()
    checked = results.row("checked")
    checked.integrity_checked, checked.data_lost = 1, 2
    results.row("never checked")
    lines = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in results.table().splitlines()[2:]}
    assert lines == {"checked": "2", "never checked": "unchecked", "**total**": "2 (1 rows unchecked)"}
