"""Data sources: fetch each one (a local path, a URL, a Hugging Face or ModelScope dataset, or the
built-in generator), read its files whatever their format, and return its records with where each
came from, plus every item left out with its reason, file and line.

A record is {"id", "source", "origin": {"file", "location"}, "question", "answer", "history"},
where history holds the earlier [question, answer] turns of a multi-turn item, plus "department"
where the item names one.
"""

from __future__ import annotations

import logging
import random
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

from medqa_scale.core import hub
from medqa_scale.core.cli import PipelineError
from medqa_scale.data.formats import read_file, suggest_fields
from medqa_scale.core.params import source_kind, source_name

log = logging.getLogger(__name__)

REPO_DOCS = {"readme.md", "license", "license.md", "license.txt", "dataset_infos.json"}


@dataclass
class SourceRead:
    name: str
    kind: str
    provenance: dict
    records: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)  # {"reason", "file", "location", "excerpt"}
    files: dict[str, dict] = field(default_factory=dict)  # per file: encoding, container, items, records

    @property
    def items(self) -> int:
        return len(self.records) + len(self.problems)

    @property
    def bad_fraction(self) -> float:
        return len(self.problems) / self.items if self.items else 0.0

    def summary(self) -> dict:
        """Counts for metrics/download_data.json; the problems themselves go to the full report."""
        return {"kind": self.kind, "provenance": self.provenance, "files": self.files, "records": len(self.records),
                "skipped": dict(sorted(Counter(p["reason"] for p in self.problems).items())),
                "skipped_total": len(self.problems), "bad_fraction": round(self.bad_fraction, 6)}


def read_source(source: dict, workdir: Path, seed: int) -> SourceRead:
    """Fetch `source` into `workdir` (an empty scratch directory) and read it."""
    kind, name = source_kind(source), source_name(source)
    if kind == "builtin":
        return _read_builtin(name, source["builtin"], seed)
    files, provenance = fetch(source, workdir)
    result = SourceRead(name, kind, provenance)
    for rel, path in files:
        read = read_file(path, fields=source.get("fields"), container=source.get("format", "auto"))
        for c in read.conversations:
            *history, (question, answer) = c["turns"]
            result.records.append({"id": f"{name}:{rel}:{c['location'].replace(' ', '')}", "source": name,
                                   "origin": {"file": rel, "location": c["location"]},
                                   "question": question, "answer": answer, "history": [list(t) for t in history],
                                   **({"department": c["department"]} if "department" in c else {})})
        result.problems += [{"reason": p.reason, "file": rel, "location": p.location, "excerpt": p.excerpt,
                             **({"keys": p.keys} if p.keys else {})} for p in read.problems]
        result.files[rel] = {"encoding": read.encoding, "container": read.container, "items": read.items,
                             "records": len(read.conversations)}
        log.info("%s: %s is %s %s, %d records, %d left out", name, rel, read.encoding, read.container,
                 len(read.conversations), len(read.problems))
    if source.get("limit"):
        result.records = result.records[:source["limit"]]
    return result


def fetch(source: dict, workdir: Path) -> tuple[list[tuple[str, Path]], dict]:
    """(its data files as (name, path), provenance) of a source that is not builtin: a path is read in
    place, a URL or a hub dataset is downloaded into `workdir` (an empty scratch directory) at its
    pinned revision. A dataset repo's card and licence are left out: they are no data. A zip archive
    is unpacked into `workdir` and stands for its members (those matching `members`, default all),
    named <archive>/<member>: sets such as CMMLU are published as one zip."""
    kind, name = source_kind(source), source_name(source)
    if kind == "path":
        root = Path(source["path"])
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.is_dir() else [root]
        provenance = {"source": "path", "path": str(root)}
    else:
        root = workdir / "download"
        root.mkdir()
        if kind == "url":
            provenance = hub.download_url(source["url"], root, source.get("sha256"))
        elif kind == "hf":
            provenance = hub.download_hf(source["hf"], source["revision"], root, repo_type="dataset",
                                         patterns=source.get("files"))
        else:
            provenance = hub.download_modelscope(source["modelscope"], source["revision"], root,
                                                 repo_type="dataset", patterns=source.get("files"))
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and not (kind in ("hf", "modelscope") and p.name.lower() in REPO_DOCS))
    named = []
    for path in files:
        rel = path.relative_to(root).as_posix() if path != root else path.name
        if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            named += unpack(path, rel, workdir / "unpacked" / rel, source.get("members"), name)
        else:
            named.append((rel, path))
    if not named:
        what = "its members patterns" if source.get("members") else "for a repo, its files patterns"
        raise PipelineError(f"source {name!r} has no files; check its {kind} and {what}")
    return named, provenance


def unpack(archive: Path, rel: str, out: Path, members: list[str] | None, name: str) -> list[tuple[str, Path]]:
    """The members of a zip archive that match `members` (globs on their paths inside it; default all),
    extracted under `out`, each named <rel>/<member>."""
    with zipfile.ZipFile(archive) as z:
        held = len(z.infolist())
        chosen = [i for i in z.infolist() if not i.is_dir() and not PurePosixPath(i.filename).name.startswith(".")
                  and (members is None or any(fnmatch(i.filename, m) for m in members))]
        for info in chosen:
            member = PurePosixPath(info.filename)
            if member.is_absolute() or ".." in member.parts:  # would write outside `out` (zip slip)
                raise PipelineError(f"source {name!r}: {rel} holds {info.filename!r}, a path outside the archive; "
                                    "refusing to unpack it. Unpack the archive by hand into data/external/ and check it")
            target = out / member
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    log.info("%s: %s holds %d entries, %d of them read (members %s)", name, rel, held, len(chosen),
             members or "all")
    return [(f"{rel}/{i.filename}", out / i.filename) for i in sorted(chosen, key=lambda i: i.filename)]


def _read_builtin(name: str, n: int, seed: int) -> SourceRead:
    from medqa_scale.builtin.corpus import generate_pairs

    try:
        pairs = generate_pairs(n, seed=seed)
    except ValueError as e:
        raise PipelineError(f"data source {name!r}: {e}; lower its builtin count") from e
    result = SourceRead(name, "builtin", {"source": "builtin", "generator": "medqa_scale/builtin/corpus.py", "seed": seed})
    result.records = [{"id": r["id"], "source": name, "origin": {"file": "generator", "location": f"item {i}"},
                       "question": r["question"], "answer": r["answer"], "history": [], "group": r["group"]}
                      for i, r in enumerate(pairs)]
    result.files["generator"] = {"encoding": "utf-8", "container": "builtin", "items": n, "records": n}
    return result


def apply_shares(reads: list[SourceRead], shares: list[float | None], seed: int) -> dict[str, int]:
    """Subsample sources so that each makes its `share` of the mix, as large as the sources allow;
    sources without a share keep every record. Returns the records dropped per source."""
    weighted = [(read, share) for read, share in zip(reads, shares) if share]
    if not weighted:
        return {}
    # The largest total the shared part can reach: no source may need more than it has.
    total = min(len(read.records) / share for read, share in weighted) * sum(share for _, share in weighted)
    dropped = {}
    for read, share in weighted:
        keep = int(total * share / sum(s for _, s in weighted))
        if keep < len(read.records):
            chosen = sorted(random.Random(seed).sample(range(len(read.records)), keep))
            dropped[read.name] = len(read.records) - keep
            read.records = [read.records[i] for i in chosen]
    return dropped


def unknown_shape_hint(problems: list[dict]) -> str:
    """For records of no known shape: the keys they hold and the `fields:` line that would read
    them, its question and answer keys guessed from their names."""
    keys = next((p["keys"] for p in problems if p.get("keys")), None)
    if not keys:
        return ""
    guess = suggest_fields(keys)
    line = (f"fields: {{question: {guess['question']}, answer: {guess['answer']}}}" if guess else
            "fields: {question: <key of the question>, answer: <key of the answer>}")
    return f". Its records hold the keys {keys}; to read them, add to the source: {line}"
