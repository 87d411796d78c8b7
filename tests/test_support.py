"""The test support that decides what a missing optional piece does: skip, naming the install
command, on a developer's machine; fail where MEDQA_REQUIRE_OPTIONAL=1 (CI, .ci/run).

Run: python -m pytest tests/test_support.py -q
"""

from __future__ import annotations

import pytest
from _pytest.outcomes import Failed, Skipped
from support import optional


def test_a_missing_optional_piece_skips_naming_its_install(monkeypatch):
    monkeypatch.delenv(optional.REQUIRE, raising=False)
    with pytest.raises(Skipped, match=r"llama-cpp-python is not installed: `pip install llama-cpp-python==0\.3\.36`"):
        optional.missing("llama-cpp-python", optional.LLAMA_CPP_INSTALL)


def test_ci_turns_the_skip_into_a_failure(monkeypatch):
    monkeypatch.setenv(optional.REQUIRE, "1")
    with pytest.raises(Failed, match=r"Chromium .* `apt-get install -y chromium`.*MEDQA_REQUIRE_OPTIONAL=1 requires it"):
        optional.missing("Chromium (/usr/bin/chromium)", optional.CHROMIUM_INSTALL)


def test_ci_sets_the_variable_before_the_readme_test_command():
    from pathlib import Path

    ci = (Path(__file__).resolve().parents[1] / ".ci/run").read_text(encoding="utf-8")
    assert ci.index("export MEDQA_REQUIRE_OPTIONAL=1") < ci.index("python -m pytest -q")
