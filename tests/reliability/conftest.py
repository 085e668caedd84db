"""The reliability suite's conftest: the harness importable by name, and its fixtures and hooks
(``reliability_fixtures.py``, a module of its own so that mypy checks it: every suite's conftest is a
module named conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

import hypothesis.configuration

HERE = Path(__file__).resolve().parent
# Hypothesis (under schemathesis) keeps a cache folder; in .pytest_cache rather than the repository root.
hypothesis.configuration.set_hypothesis_home_dir(HERE.parents[1] / ".pytest_cache" / "hypothesis")
if str(HERE) not in sys.path:  # the test modules import the harness by name
    sys.path.insert(0, str(HERE))

from reliability_fixtures import (  # noqa: E402, F401 (pytest finds fixtures and hooks by name here)
    aws_proxy,
    clean_faults,
    ctx,
    moto,
    pytest_runtest_makereport,
    pytest_terminal_summary,
    stack,
    system_intact,
)
