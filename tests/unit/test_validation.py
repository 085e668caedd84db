"""Caller input checks shared by every route."""

from __future__ import annotations

import pytest

from zus_m2m import errors, validation


@pytest.mark.parametrize("name", ["a", "billing-service", "svc.v2_blue", "...", "x" * 64, ".hidden"])
def test_names_of_1_to_64_allowed_characters_are_accepted(name: str) -> None:
    assert validation.client_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a/b", "a b", "é", "a\n", None, 7, ".", ".."])
def test_other_names_are_400_naming_the_rule(name: object) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        validation.client_name(name)
    assert "1-64 characters" in caught.value.detail


@pytest.mark.parametrize("name", ["ZUS-M2M-ADMIN", "Zus-M2M-Admin", "Billing-Service", "A"])
def test_names_are_lower_case_so_uniqueness_is_case_insensitive(name: str) -> None:
    """The protected admin's name, or any name, cannot come back in another case beside itself."""
    with pytest.raises(errors.InvalidRequest) as caught:
        validation.client_name(name)
    assert caught.value.detail.endswith(f"(names are lower case: {name.lower()!r})")


@pytest.mark.parametrize(("raw", "expected"), [(None, 60), ("0", 0), ("3000", 3000), (" 42 ", 42)])
def test_min_ttl_in_range(raw: str | None, expected: int) -> None:
    assert validation.integer_in_range("minTtl", raw, 60, 0, 3000) == expected


@pytest.mark.parametrize("raw", ["-1", "3001", "1e9", "abc", "", "1.5", "9999999999"])
def test_min_ttl_out_of_range_or_not_an_integer_is_400(raw: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        validation.integer_in_range("minTtl", raw, 60, 0, 3000)
    assert "minTtl" in caught.value.detail
