"""Tests for stages/download_model.py, run offline against local stand-ins.

`download_hf` runs the real huggingface_hub code (HfApi.model_info, snapshot_download, its
HEAD/GET file downloads) against `FakeHub`, a threaded HTTP server on 127.0.0.1 that imitates
the parts of the Hugging Face Hub API those calls use:

  GET  /api/models/{repo_id}/revision/{rev}          model_info: {"id", "sha", "siblings", ...}
  GET  /api/models/{repo_id}/tree/{rev}?recursive=   list_repo_tree: [{"type": "file", "path",
                                                     "size", "oid", "lfs": {...}}] (one page)
  HEAD /{repo_id}/resolve/{rev}/{file}               file metadata: X-Repo-Commit, ETag (git
                                                     blob sha1, or the sha256 for LFS files),
                                                     X-Linked-Etag / X-Linked-Size for LFS
                                                     files, Content-Length
  GET  /{repo_id}/resolve/{rev}/{file}               the bytes
  errors as the Hub sends them: X-Error-Code RepoNotFound (401), RevisionNotFound (404),
  EntryNotFound (404).

No xet header (X-Xet-Hash, Link rel=xet-auth) and no tree `xetHash` is ever sent, so
huggingface_hub falls back to plain HTTP even though hf_xet is installed.

Pointing huggingface_hub at the stand-in: HF_ENDPOINT is read once, when
huggingface_hub.constants is imported, into `constants.ENDPOINT` and
`constants.HUGGINGFACE_CO_URL_TEMPLATE` (hf_hub_url formats the latter, so patching ENDPOINT
alone is not enough). The `hub_env` fixture sets the environment variables (for anything that
reads them later) AND monkeypatches those constants, plus the cache/home/token paths, the
offline and telemetry flags, all restored after each test. It also drops proxy variables and
closes huggingface_hub's shared httpx client before and after, so the client is built for
127.0.0.1 and no connection leaks between tests. Patching the constant
HF_HUB_DISABLE_TELEMETRY (not only the variable) matters: without it, building the User-Agent
fetches `{ENDPOINT}/api/agent-harnesses` once per process. Reloading the constants module was avoided:
it would not be undone at teardown and would leave stale `from constants import X` copies.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from stages import download_model, medqa_synth, tiny_model  # noqa: E402
from stages.params import PipelineError  # noqa: E402

REPO_ID = "tiny-org/tiny-qwen"
TINY_ARCH = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=128,
    tie_word_embeddings=True,
)
LFS_SUFFIXES = (".safetensors", ".bin")  # what a Hub repo's default .gitattributes puts in LFS


# --- a tiny repo to serve ---------------------------------------------------------------------


def save_tiny_model(out: Path, seed: int = 0):
    """A real tiny Qwen2 model + tokenizer saved in Hugging Face layout; returns the model."""
    tokenizer = tiny_model.build_tokenizer(medqa_synth.tokenizer_text(0, 200), 400)
    model = tiny_model.build_model(tokenizer, TINY_ARCH, seed=seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by '/'-separated relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory):
    """(files, state_dict): the repo at 'main', a tiny model plus a decoy pickle and a README."""
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


class FakeHub:
    """Serves repos as {commit: {path: bytes}} with refs {name: commit}; records every request."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self.after_model_info = None  # callable run once a model_info answer has been sent
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

    def add_commit(self, repo_id: str, files: dict[str, bytes], ref: str | None = "main") -> str:
        repo = self.repos.setdefault(repo_id, {"commits": {}, "refs": {}})
        sha = commit_sha(files, parent=repo["refs"].get("main", ""))
        repo["commits"][sha] = dict(files)
        if ref:
            repo["refs"][ref] = sha
        return sha

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [p for m, p in self.requests if method is None or m == method]

    # request handling

    def _lookup(self, h, repo_id: str, rev: str, head: bool) -> tuple[dict, str] | None:
        """(repo, commit sha) for a request, or None after answering with the hub's error."""
        repo = self.repos.get(repo_id)
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

    def _handle(self, h, head: bool):
        with self._lock:
            self.requests.append((h.command, h.path))
        parts = urlsplit(h.path)
        path, query = parts.path, parse_qs(parts.query)

        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
            repo_id, rev = m.group(1), unquote(m.group(2))
            found = self._lookup(h, repo_id, rev, head)
            if found is None:
                return
            repo, sha = found
            files = repo["commits"][sha]
            self._json(h, {
                "_id": "0" * 24, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
                "sha": sha, "private": False, "gated": False, "disabled": False,
                "library_name": "transformers", "tags": ["transformers", "safetensors", "qwen2"],
                "pipeline_tag": "text-generation", "lastModified": "2024-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(files)],
            }, head)
            if self.after_model_info is not None:
                hook, self.after_model_info = self.after_model_info, None
                hook()
            return

        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
            repo_id, rev, sub = m.group(1), unquote(m.group(2)), unquote(m.group(3) or "")
            found = self._lookup(h, repo_id, rev, head)
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
                if p.endswith(LFS_SUFFIXES):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
            return self._json(h, entries, head)

        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo_id, rev, filename = m.group(1), unquote(m.group(2)), unquote(m.group(3))
            found = self._lookup(h, repo_id, rev, head)
            if found is None:
                return
            repo, sha = found
            data = repo["commits"][sha].get(filename)
            if data is None:
                return self._error(h, 404, "EntryNotFound", f"{filename} does not exist",
                                   head, {"X-Repo-Commit": sha})
            headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": sha,
                       "ETag": f'"{git_blob_sha1(data)}"', "Accept-Ranges": "bytes"}
            if filename.endswith(LFS_SUFFIXES):
                # LFS files: the Hub names the blob by its sha256 in X-Linked-Etag.
                headers["ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                headers["X-Linked-Size"] = str(len(data))
            return self._send(h, 200, data, headers, head)

        return self._error(h, 404, "NotFound", f"no route for {path}", head)


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
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                  "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
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


def assert_only_hub_api(hub: FakeHub, commit: str) -> None:
    """Every request hit a known endpoint; file listings and downloads named the commit, not 'main'."""
    paths = hub.paths()
    assert paths, "the stand-in hub saw no request"
    for p in paths:
        assert re.match(r"/api/models/[^/]+/[^/]+/(revision|tree)/|/[^/]+/[^/]+/resolve/", p), f"unexpected request {p}"
    pinned = [p for p in paths if "/tree/" in p or "/resolve/" in p]
    assert pinned, "no tree listing or file download was requested"
    for p in pinned:
        assert f"/{commit}" in p and "/main" not in p, f"request not pinned to {commit}: {p}"


# --- download_hf --------------------------------------------------------------------------------


EXPECTED_HF_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json", "chat_template.jinja"}


def test_download_hf_fetches_pinned_commit_without_pickles(hub_env, served_repo, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    served_dir, files, state_dict = served_repo
    commit = hub_env.add_commit(REPO_ID, files)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    out = tmp_path / "out"
    out.mkdir()

    provenance = download_model.download_hf(REPO_ID, "main", out)

    assert provenance == {"source": "hf", "repo_id": REPO_ID, "revision": "main", "resolved_commit": commit}
    got = read_tree(out)
    assert set(got) == EXPECTED_HF_FILES  # no .bin, no README, no .cache bookkeeping, no lock files
    assert not (out / "pytorch_model.bin").exists()
    assert not (out / ".cache").exists()
    for name, data in got.items():
        assert data == files[name], f"{name} differs from the served file"
    download_model.check_layout(out)

    # The model loads from safetensors alone, with the served weights, and the tokenizer works.
    loaded = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    loaded_sd = loaded.state_dict()
    assert set(loaded_sd) == set(state_dict)
    for k, v in state_dict.items():
        assert torch.equal(loaded_sd[k], v), k
    tok = AutoTokenizer.from_pretrained(out)
    ref = AutoTokenizer.from_pretrained(served_dir)
    text = "患者发热三天，咳嗽。"
    assert tok(text)["input_ids"] == ref(text)["input_ids"]

    # The branch was resolved once, then the listing and every file download named the commit.
    assert any(p.startswith(f"/api/models/{REPO_ID}/revision/main") for p in hub_env.paths("GET"))
    assert any(f"/api/models/{REPO_ID}/tree/{commit}" in p for p in hub_env.paths("GET"))
    downloaded = {unquote(p.split(f"/resolve/{commit}/", 1)[1]) for p in hub_env.paths("GET") if "/resolve/" in p}
    assert downloaded == EXPECTED_HF_FILES  # the decoy pickle was never even requested
    assert not any("pytorch_model.bin" in p or "README.md" in p for p in hub_env.paths() if "/resolve/" in p)
    assert_only_hub_api(hub_env, commit)


def test_download_hf_keeps_resolved_commit_when_branch_moves(hub_env, served_repo, tmp_path):
    """main moves to a new commit right after it was resolved: the files still come from the old one."""
    _, files, state_dict = served_repo
    commit_a = hub_env.add_commit(REPO_ID, files)
    newer = tmp_path / "newer"
    save_tiny_model(newer, seed=1)
    files_b = {**files, **read_tree(newer)}
    assert files_b["model.safetensors"] != files["model.safetensors"]
    commit_b = hub_env.add_commit(REPO_ID, files_b, ref=None)
    repo = hub_env.repos[REPO_ID]
    hub_env.after_model_info = lambda: repo["refs"].__setitem__("main", commit_b)
    out = tmp_path / "out"
    out.mkdir()

    provenance = download_model.download_hf(REPO_ID, "main", out)

    assert repo["refs"]["main"] == commit_b  # the branch did move
    assert provenance["resolved_commit"] == commit_a
    assert (out / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert not any(commit_b in p for p in hub_env.paths())
    assert_only_hub_api(hub_env, commit_a)


def test_download_hf_unknown_revision_raises(hub_env, served_repo, tmp_path):
    from huggingface_hub.errors import RevisionNotFoundError

    hub_env.add_commit(REPO_ID, served_repo[1])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RevisionNotFoundError):
        download_model.download_hf(REPO_ID, "no-such-branch", out)
    assert list(out.iterdir()) == []
    assert not any("/resolve/" in p or "/tree/" in p for p in hub_env.paths())


def test_download_hf_pickle_only_repo_fails_layout_check(hub_env, served_repo, tmp_path):
    """A repo with only pytorch_model.bin downloads no weights, and check_layout says why."""
    files = {k: v for k, v in served_repo[1].items() if k != "model.safetensors"}
    commit = hub_env.add_commit(REPO_ID, files)
    out = tmp_path / "out"
    out.mkdir()
    download_model.download_hf(REPO_ID, "main", out)
    assert not list(out.glob("*.bin"))
    with pytest.raises(PipelineError, match="safetensors"):
        download_model.check_layout(out)
    assert_only_hub_api(hub_env, commit)


# --- copy_local and check_layout ----------------------------------------------------------------


def test_copy_local_copies_model_and_skips_pickles(served_repo, tmp_path):
    served_dir, files, _ = served_repo
    out = tmp_path / "out"
    out.mkdir()

    provenance = download_model.copy_local(served_dir, out)

    assert provenance == {"source": "local", "path": str(served_dir.resolve())}
    got = read_tree(out)
    assert set(got) == EXPECTED_HF_FILES
    assert not (out / "pytorch_model.bin").exists()
    assert all(got[name] == files[name] for name in got)
    download_model.check_layout(out)


def test_check_layout_rejects_pickle_only_model(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(PipelineError, match="safetensors") as err:
        download_model.check_layout(tmp_path)
    assert "config.json" in str(err.value) and "tokenizer_config.json" in str(err.value)


def test_check_layout_rejects_missing_weights_even_with_config(served_repo, tmp_path):
    served_dir, _, _ = served_repo
    download_model.copy_local(served_dir, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(PipelineError, match=r"\*\.safetensors"):
        download_model.check_layout(tmp_path)


# --- determinism of the builtin model -----------------------------------------------------------


def sha256_tree(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in read_tree(root).items()}


def test_build_builtin_is_byte_identical_across_runs(tmp_path):
    p = {
        "seed": 7,
        "model": {
            "builtin": {
                "vocab_size": 400,
                "arch": TINY_ARCH,
                "pretrain": {"passages": 50, "steps": 3, "batch_size": 4, "lr": 0.003},
            }
        },
    }
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    prov_a = download_model.build_builtin(p, a)
    prov_b = download_model.build_builtin(p, b)

    assert prov_a == prov_b
    assert prov_a["source"] == "builtin" and prov_a["seed"] == 7
    hashes_a, hashes_b = sha256_tree(a), sha256_tree(b)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(hashes_a)
    assert hashes_a == hashes_b
    download_model.check_layout(a)
