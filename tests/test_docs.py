"""The README and docs/: the README stays short, every link leads to a file, and every command they
show names a module, script, file, flag, params key or preset that exists. The commands' behaviour
is tested where each feature is (test_presets for the presets table, test_pipeline for the
experiments table and the plots, test_chat, test_export, test_app ...).

Run: python -m pytest tests/test_docs.py -q
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from medqa_scale.core.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIG_GROUPS = ("profile", "hardware", "model", "strategy")


def commands(prefix: str) -> list[tuple[Path, str]]:
    """(page, command) for every command starting with `prefix` in a code block or a table cell."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for line in re.findall(r"`([^`\n]+)`", text) + re.findall(r"^(?:\$ )?([^#|`\n].*)$", text, flags=re.M):
            if line.startswith(prefix):
                found.append((page, line.split("  #")[0].strip()))
    return sorted(set(found))


def test_the_readme_is_short_and_names_the_set_up_and_test_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "pip install --require-hashes --no-deps -r requirements.lock\ndvc repro\n" in readme
    assert "python -m pytest -q\n" in readme


def test_every_docs_page_is_linked_from_the_readme_and_the_index():
    readme, index = ((ROOT / p).read_text(encoding="utf-8") for p in ("README.md", "docs/README.md"))
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"docs/{page.name}" in readme and f"({page.name})" in index, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file(page):
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
        if not re.match(r"[a-z]+://", target):
            assert (page.parent / target).exists(), f"{page.name} links to {target}"


def test_every_python_module_and_flag_shown_exists():
    seen = 0
    for page, line in commands("python -m medqa_scale"):
        words = shlex.split(line.split(" < ")[0])
        module = words[2]
        if "<" in module:
            continue
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{page.name}: {module} does not exist"
        source = Path(spec.origin).read_text(encoding="utf-8")
        for flag in (w for w in words[3:] if w.startswith("--")):
            assert f'"{flag}"' in source, f"{page.name}: {module} has no {flag}"
        seen += 1
    assert seen >= 10


def test_every_script_and_test_file_shown_exists():
    for page, line in commands("python bench/") + commands("python -m pytest"):
        for word in shlex.split(line):
            if word.startswith(("bench/", "tests/")):
                assert (ROOT / word).exists(), f"{page.name}: {word}"
                if word.startswith("bench/"):
                    source = (ROOT / word).read_text(encoding="utf-8")
                    for flag in (w for w in shlex.split(line) if w.startswith("--")):
                        assert f'"{flag}"' in source, f"{page.name}: {word} has no {flag}"


def test_every_params_override_shown_names_a_key_or_a_preset():
    params = read_yaml(ROOT / "params.yaml")
    for page, line in commands("dvc exp run"):
        words = shlex.split(line)
        for key, value in (w.split("=", 1) for prev, w in zip(words, words[1:]) if prev == "-S"):
            if key in CONFIG_GROUPS:
                assert (ROOT / "conf" / key / f"{value}.yaml").exists(), f"{page.name}: no preset {key}={value}"
                continue
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{page.name}: `{line}` sets {key}, not a params key"
                node = node[part]
