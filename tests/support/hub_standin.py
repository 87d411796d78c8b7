"""A local stand-in for the Hugging Face Hub, and the pytest fixtures that point huggingface_hub at it.

Tests of medqa_scale.core.hub (and of anything else that downloads model or dataset repos) run the
real huggingface_hub code (HfApi.model_info / dataset_info, snapshot_download, its HEAD/GET file
downloads) against `FakeHub`, a threaded HTTP server on 127.0.0.1 that imitates the parts of the
Hugging Face Hub API those calls use. Repos are kept per (repo_type, repo_id); model repos answer
on the model routes and dataset repos on the dataset routes, as on the real Hub:

  GET  /api/models/{repo_id}/revision/{rev}          model_info: {"id", "sha", "siblings", ...}
  GET  /api/datasets/{repo_id}/revision/{rev}        dataset_info: the same shape, for datasets
  GET  /api/models/{repo_id}/tree/{rev}?recursive=   list_repo_tree: [{"type": "file", "path",
  GET  /api/datasets/{repo_id}/tree/{rev}?recursive=  "size", "oid", "lfs": {...}}] (one page)
  HEAD /{repo_id}/resolve/{rev}/{file}               file metadata (models): X-Repo-Commit, ETag
  HEAD /datasets/{repo_id}/resolve/{rev}/{file}      (datasets): (git blob sha1, or the sha256
                                                     for LFS files), X-Linked-Etag /
                                                     X-Linked-Size for LFS files, Content-Length
  GET  /{repo_id}/resolve/{rev}/{file}               the bytes (models)
  GET  /datasets/{repo_id}/resolve/{rev}/{file}      the bytes (datasets)
  POST /api/validate-yaml                            README.md front matter checked against the model card
                                                     metadata spec's types (400 with the error, as the Hub)
  POST /api/repos/create                             create_repo: {"name", "organization", "type"}
                                                     -> {"url"}; 409 when it exists (exist_ok)
  POST /api/models/{repo_id}/preupload/{rev}         every file "regular" (sent inside the commit)
  POST /api/models/{repo_id}/commit/{rev}            create_commit's NDJSON (header, base64 files)
                                                     -> a new commit on `rev`: {"commitUrl", "commitOid"}
  errors as the Hub sends them: X-Error-Code RepoNotFound (401), RevisionNotFound (404),
  EntryNotFound (404).
  Writes need an `Authorization: Bearer ...` header (401 otherwise); `tokens` records each one.

No xet header (X-Xet-Hash, Link rel=xet-auth) and no tree `xetHash` is ever sent, so
huggingface_hub falls back to plain HTTP even though hf_xet is installed.

Pointing huggingface_hub at the stand-in: HF_ENDPOINT is read once, when
huggingface_hub.constants is imported, into `constants.ENDPOINT` and
`constants.HUGGINGFACE_CO_URL_TEMPLATE` (hf_hub_url formats the latter, so patching ENDPOINT
alone is not enough; it prefixes "datasets/" to the repo id itself for dataset files). The
`hub_env` fixture sets the environment variables (for anything that reads them later) AND
monkeypatches those constants, plus the cache/home/token paths, the offline and telemetry flags,
all restored after each test. It also drops proxy variables and closes huggingface_hub's shared
httpx client before and after, so the client is built for 127.0.0.1 and no connection leaks
between tests. Patching the constant HF_HUB_DISABLE_TELEMETRY (not only the variable) matters:
without it, building the User-Agent fetches `{ENDPOINT}/api/agent-harnesses` once per process.
Reloading the constants module was avoided: it would not be undone at teardown and would leave
stale `from constants import X` copies.

Use: import the fixtures into a test module or conftest.py,
`from hub_standin import hub_env, served_repo  # noqa: F401`, then
`commit = hub_env.add_commit("org/name", {"path": b"bytes"}, repo_type="model" or "dataset")`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

TINY_ARCH = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=128,
    tie_word_embeddings=True,
)
LFS_SUFFIXES = (".safetensors", ".bin")  # what a Hub model repo's default .gitattributes puts in LFS
# A dataset repo's default .gitattributes also puts its data formats in LFS.
DATASET_LFS_SUFFIXES = LFS_SUFFIXES + (".parquet", ".arrow", ".gz", ".zip")
REPO_TYPES = ("model", "dataset")


# --- a tiny repo to serve ---------------------------------------------------------------------


def save_tiny_model(out: Path, seed: int = 0):
    """A real tiny Qwen2 model + tokenizer saved in Hugging Face layout; returns the model."""
    # Imported here, not at the top, so that importing the fixtures (conftest.py does) stays cheap.
    from medqa_scale.builtin import corpus, model as builtin_model

    tokenizer = builtin_model.build_tokenizer([r["question"] + r["answer"] for r in corpus.generate_pairs(200, seed=0)], 400)
    model = builtin_model.build_model(tokenizer, TINY_ARCH, seed=seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by '/'-separated relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory):
    """(dir, files, state_dict): the repo at 'main', a tiny model plus a decoy pickle and a README."""
    import torch

    d = tmp_path_factory.mktemp("served")
    model = save_tiny_model(d, seed=0)
    torch.save(model.state_dict(), d / "pytorch_model.bin")  # decoy: must never be fetched
    (d / "README.md").write_text("---\nlicense: mit\n---\n# tiny-qwen\n", encoding="utf-8")
    files = read_tree(d)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    return d, files, {k: v.clone() for k, v in model.state_dict().items()}


# --- the Hub stand-in -------------------------------------------------------------------------


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_sha(files: dict[str, bytes], parent: str = "") -> str:
    h = hashlib.sha1(parent.encode())
    for path in sorted(files):
        h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return h.hexdigest()


def is_lfs(repo_type: str, path: str) -> bool:
    return path.endswith(DATASET_LFS_SUFFIXES if repo_type == "dataset" else LFS_SUFFIXES)


class FakeHub:
    """Serves repos as {commit: {path: bytes}} with refs {name: commit}, keyed by (repo_type,
    repo_id); records every request."""

    def __init__(self):
        self.repos: dict[tuple[str, str], dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self.tokens: list[str] = []  # the bearer token of each write
        self.after_info = None  # callable run once a model_info or dataset_info answer has been sent
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                hub._handle(self, head=False)

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_POST(self):
                hub._write(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def add_commit(self, repo_id: str, files: dict[str, bytes], ref: str | None = "main",
                   repo_type: str = "model", sha: str | None = None) -> str:
        """Add a commit holding exactly `files` (its parent is `main`'s commit); move `ref` to it.
        `sha` stands in for a real repo's commit that params pin."""
        assert repo_type in REPO_TYPES, repo_type
        repo = self.repos.setdefault((repo_type, repo_id), {"commits": {}, "refs": {}})
        sha = sha or commit_sha(files, parent=repo["refs"].get("main", ""))
        repo["commits"][sha] = dict(files)
        if ref:
            repo["refs"][ref] = sha
        return sha

    def repo(self, repo_id: str, repo_type: str = "model") -> dict:
        """{"commits": ..., "refs": ...} of a repo, to inspect or move its refs in a test."""
        return self.repos[(repo_type, repo_id)]

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [p for m, p in self.requests if method is None or m == method]

    # request handling

    def _lookup(self, h, repo_type: str, repo_id: str, rev: str, head: bool) -> tuple[dict, str] | None:
        """(repo, commit sha) for a request, or None after answering with the hub's error."""
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            self._error(h, 401, "RepoNotFound", f"Repository Not Found for url: {h.path}", head)
            return None
        sha = self._resolve(repo, rev)
        if sha is None:
            self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            return None
        return repo, sha

    def _resolve(self, repo: dict, rev: str) -> str | None:
        if rev in repo["commits"]:
            return rev
        return repo["refs"].get(rev)

    def _send(self, h, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _json(self, h, obj, head: bool = False, headers: dict | None = None):
        self._send(h, 200, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, head)

    def _error(self, h, status: int, code: str, message: str, head: bool = False, headers: dict | None = None):
        body = json.dumps({"error": message}).encode()
        self._send(h, status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                     "X-Error-Message": message, **(headers or {})}, head)

    def _info(self, repo_type: str, repo_id: str, sha: str, files: dict[str, bytes]) -> dict:
        if repo_type == "model":
            return {
                "_id": "0" * 24, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
                "sha": sha, "private": False, "gated": False, "disabled": False,
                "library_name": "transformers", "tags": ["transformers", "safetensors", "qwen2"],
                "pipeline_tag": "text-generation", "lastModified": "2024-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(files)],
            }
        return {
            "_id": "0" * 24, "id": repo_id, "author": repo_id.split("/")[0],
            "sha": sha, "private": False, "gated": False, "disabled": False,
            "tags": [], "lastModified": "2024-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in sorted(files)],
        }

    def _handle(self, h, head: bool):
        with self._lock:
            self.requests.append((h.command, h.path))
        parts = urlsplit(h.path)
        path, query = parts.path, parse_qs(parts.query)

        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/revision/([^/]+)", path):
            repo_type, repo_id, rev = m.group(1)[:-1], m.group(2), unquote(m.group(3))
            found = self._lookup(h, repo_type, repo_id, rev, head)
            if found is None:
                return
            repo, sha = found
            self._json(h, self._info(repo_type, repo_id, sha, repo["commits"][sha]), head)
            if self.after_info is not None:
                hook, self.after_info = self.after_info, None
                hook()
            return

        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
            repo_type, repo_id = m.group(1)[:-1], m.group(2)
            rev, sub = unquote(m.group(3)), unquote(m.group(4) or "")
            found = self._lookup(h, repo_type, repo_id, rev, head)
            if found is None:
                return
            repo, sha = found
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            prefix = f"{sub.rstrip('/')}/" if sub else ""
            entries, folders = [], set()
            for p, data in sorted(repo["commits"][sha].items()):
                if not p.startswith(prefix):
                    continue
                rest = p[len(prefix):]
                if "/" in rest and not recursive:
                    folders.add(prefix + rest.split("/")[0])
                    continue
                entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": p}
                if is_lfs(repo_type, p):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
            return self._json(h, entries, head)

        # Dataset files first: "/datasets/org/name/resolve/..." must not be read as a model id.
        if m := re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo_type = "dataset" if m.group(1) else "model"
            repo_id, rev, filename = m.group(2), unquote(m.group(3)), unquote(m.group(4))
            found = self._lookup(h, repo_type, repo_id, rev, head)
            if found is None:
                return
            repo, sha = found
            data = repo["commits"][sha].get(filename)
            if data is None:
                return self._error(h, 404, "EntryNotFound", f"{filename} does not exist",
                                   head, {"X-Repo-Commit": sha})
            headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": sha,
                       "ETag": f'"{git_blob_sha1(data)}"', "Accept-Ranges": "bytes"}
            if is_lfs(repo_type, filename):
                # LFS files: the Hub names the blob by its sha256 in X-Linked-Etag.
                headers["ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                headers["X-Linked-Size"] = str(len(data))
            return self._send(h, 200, data, headers, head)

        return self._error(h, 404, "NotFound", f"no route for {path}", head)

    def _write(self, h) -> None:
        """POST: create a repo, answer preupload, apply a commit (upload_folder's three calls)."""
        with self._lock:
            self.requests.append((h.command, h.path))
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if urlsplit(h.path).path == "/api/validate-yaml":
            error = card_metadata_error(json.loads(body)["content"])
            return self._send(h, 400, json.dumps({"error": error}).encode(), {"Content-Type": "application/json"}) \
                if error else self._json(h, {"warnings": []})
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._error(h, 401, "Unauthorized", "Invalid credentials in Authorization header")
        self.tokens.append(auth.removeprefix("Bearer "))
        path = urlsplit(h.path).path
        if path == "/api/repos/create":
            spec = json.loads(body)
            repo_type = spec.get("type") or "model"
            repo_id = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else spec["name"]
            url = f"{self.url}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
            if (repo_type, repo_id) in self.repos:
                return self._send(h, 409, json.dumps({"error": "You already created this model repo", "url": url}).encode(),
                                 {"Content-Type": "application/json"})
            self.repos[(repo_type, repo_id)] = {"commits": {}, "refs": {}}
            return self._json(h, {"url": url, "name": repo_id})
        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/preupload/([^/]+)", path):
            files = json.loads(body)["files"]
            return self._json(h, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/commit/([^/]+)", path):
            repo_type, repo_id, rev = m.group(1)[:-1], m.group(2), unquote(m.group(3))
            repo = self.repos.get((repo_type, repo_id))
            if repo is None:
                return self._error(h, 401, "RepoNotFound", f"Repository Not Found for url: {h.path}")
            files = dict(repo["commits"].get(repo["refs"].get(rev, ""), {}))
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    value = item["value"]
                    files[value["path"]] = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                        else value["content"].encode()
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
            sha = self.add_commit(repo_id, files, ref=rev, repo_type=repo_type)
            return self._json(h, {"commitUrl": f"{self.url}/{repo_id}/commit/{sha}", "commitOid": sha})
        return self._error(h, 404, "NotFound", f"no route for POST {path}")


# The model card metadata fields the Hub checks, by type (huggingface.co/docs/hub/model-cards); the
# pipeline tags a text model may carry.
_CARD_FIELDS = {"license": str, "license_name": str, "license_link": str, "library_name": str, "pipeline_tag": str,
                "language": (str, list), "tags": list, "datasets": (str, list), "base_model": (str, list),
                "metrics": (str, list), "model_name": str}
_PIPELINE_TAGS = {"text-generation", "text2text-generation", "question-answering", "fill-mask", "text-classification"}


def card_metadata_error(readme: str) -> str | None:
    """Why a README.md's YAML front matter would be refused, or None."""
    import yaml

    m = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
    if not m:
        return None  # no metadata: the Hub warns, it does not refuse
    try:
        data = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as e:
        return f"Invalid YAML: {e}"
    if not isinstance(data, dict):
        return "metadata must be a mapping"
    for key, kind in _CARD_FIELDS.items():
        if key in data and not isinstance(data[key], kind):
            return f'"{key}" must be {kind}'
        if isinstance(data.get(key), list) and not all(isinstance(v, str) for v in data[key]):
            return f'"{key}" must be a list of strings'
    if data.get("pipeline_tag") and data["pipeline_tag"] not in _PIPELINE_TAGS:
        return f'"pipeline_tag" must be a valid pipeline tag, not {data["pipeline_tag"]!r}'
    if data.get("license") == "other" and not (data.get("license_name") and data.get("license_link")):
        return 'license "other" needs license_name and license_link'
    return None


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """A running FakeHub with huggingface_hub pointed at it, hermetically."""
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    home = tmp_path / "hf_home"
    cache = home / "hub"
    with FakeHub() as hub:
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(cache),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN",
                  "HUGGING_FACE_HUB_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                  "https_proxy", "all_proxy"):
            monkeypatch.delenv(k, raising=False)
        # The constants module read these once, at import: patch the values it holds.
        for name, value in {
            "ENDPOINT": hub.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(cache),
            "HF_ASSETS_CACHE": str(home / "assets"),
            "HF_XET_CACHE": str(home / "xet"),
            "HF_TOKEN_PATH": str(home / "token"),
            "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_TELEMETRY": True,
        }.items():
            monkeypatch.setattr(constants, name, value)
        close_session()  # the shared httpx client is rebuilt under this environment
        try:
            yield hub
        finally:
            close_session()


def assert_only_hub_api(hub: FakeHub, commit: str, repo_type: str = "model") -> None:
    """Every request hit a known endpoint of `repo_type`'s routes; file listings and downloads
    named the commit, not 'main'."""
    paths = hub.paths()
    assert paths, "the stand-in hub saw no request"
    known = {
        "model": r"/api/models/[^/]+/[^/]+/(revision|tree)/|/[^/]+/[^/]+/resolve/",
        "dataset": r"/api/datasets/[^/]+/[^/]+/(revision|tree)/|/datasets/[^/]+/[^/]+/resolve/",
    }[repo_type]
    for p in paths:
        assert re.match(known, p), f"unexpected request {p}"
    pinned = [p for p in paths if "/tree/" in p or "/resolve/" in p]
    assert pinned, "no tree listing or file download was requested"
    for p in pinned:
        assert f"/{commit}" in p and "/main" not in p, f"request not pinned to {commit}: {p}"


# --- a plain HTTP file server, for url sources ----------------------------------------------------


@pytest.fixture
def file_server(tmp_path):
    """(root, base URL): files written under root are served at base URL on 127.0.0.1."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    root = tmp_path / "served_files"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
