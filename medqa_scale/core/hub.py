"""The source layer: fetching files from the Hugging Face hub (models and datasets), ModelScope,
an http(s) URL or a local directory, each pinned and recorded. For a model only what it needs to
load is fetched; pickled weights (*.bin, *.pt) never are.

The output holds nothing that changes between identical downloads (no timestamps, no hub cache
metadata), so the stages after it do not rerun for nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

from medqa_scale.core.cli import PipelineError

log = logging.getLogger(__name__)

MODEL_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
RETRY_AFTER_S = 5  # one retry, this long after the first failure: a blip passes, a blocked network does not
WHAT_TO_DO = ("set HF_ENDPOINT to a mirror you can reach (for example HF_ENDPOINT=https://hf-mirror.com), use "
              "`source: modelscope`, or fetch the files yourself and use `source: local` with a path (a model) or "
              "`path:` (data)")


def unreachable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the endpoint could not be reached, as opposed to an
    answer from it (a missing repo, a bad revision): connection refused, DNS, timeouts, TLS."""
    import urllib.error

    while error is not None:
        if isinstance(error, urllib.error.HTTPError):  # the server answered
            return False
        names = {c.__name__ for c in type(error).__mro__}
        if isinstance(error, (ConnectionError, TimeoutError)) or names & {"TransportError", "ConnectionError", "Timeout",
                                                                           "URLError", "SSLError"}:
            return True
        error = error.__cause__ or error.__context__
    return False


def with_retry(fetch, what: str, endpoint: str, advice: str = WHAT_TO_DO):
    """`fetch()`, tried again once after RETRY_AFTER_S when the endpoint cannot be reached; then
    one message naming the endpoint, the retry and what to do, instead of a network traceback."""
    for attempt in (1, 2):
        try:
            return fetch()
        except Exception as e:  # noqa: BLE001  (anything else is re-raised as it was)
            if not unreachable(e):
                raise
            if attempt == 1:
                log.warning("%s: %s unreachable (%s); retrying in %d s", what, endpoint, _reason(e), RETRY_AFTER_S)
                time.sleep(RETRY_AFTER_S)
                continue
            raise PipelineError(f"could not reach {endpoint} for {what}: {_reason(e)} (tried twice, {RETRY_AFTER_S} s "
                                f"apart). To fix: {advice}") from None


def _reason(error: BaseException) -> str:
    """The innermost reason of a network error, in one line."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    return (str(getattr(error, "reason", None) or error) or type(error).__name__).splitlines()[0][:200]


def copy_local(src: Path, out: Path) -> dict:
    for pattern in MODEL_FILES:
        for f in sorted(src.glob(pattern)):
            shutil.copy2(f, out / f.name)
    return {"source": "local", "path": str(src.resolve())}


def download_hf(repo_id: str, revision: str, out: Path, *, repo_type: str = "model",
                patterns: list[str] | None = None) -> dict:
    """The files of `repo_id` at the commit `revision` resolves to; HF_ENDPOINT selects a mirror.

    A model gets its top-level MODEL_FILES; a dataset the files matching `patterns` (default all),
    as raw files: many datasets ship loading scripts that `datasets` no longer runs.
    """
    from huggingface_hub import HfApi, constants, snapshot_download

    api = HfApi()
    what = f"{repo_type} {repo_id}@{revision}"
    # Resolve a branch or tag to its commit first, and download exactly that commit.
    info = api.model_info if repo_type == "model" else api.dataset_info
    commit = with_retry(lambda: info(repo_id, revision=revision).sha, what, constants.ENDPOINT)
    log.info("downloading %s %s@%s (commit %s) from %s", repo_type, repo_id, revision, commit, constants.ENDPOINT)
    if repo_type == "model":
        # Top-level files only: some repos keep extra weight copies in subfolders (original/, onnx/).
        with_retry(lambda: snapshot_download(repo_id, revision=commit, local_dir=out, allow_patterns=MODEL_FILES,
                                             ignore_patterns=["*/*"]), what, constants.ENDPOINT)
    else:
        with_retry(lambda: snapshot_download(repo_id, repo_type=repo_type, revision=commit, local_dir=out,
                                             allow_patterns=patterns), what, constants.ENDPOINT)
    shutil.rmtree(out / ".cache", ignore_errors=True)  # hub bookkeeping with timestamps
    provenance = {"source": "hf", "repo_id": repo_id, "revision": revision, "resolved_commit": commit}
    return provenance if repo_type == "model" else {**provenance, "repo_type": repo_type, "files": _files(out)}


def download_url(url: str, out: Path, sha256: str | None = None) -> dict:
    """The file at an http(s) URL, checked against `sha256` when one is given."""
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    target = Path(out) / (Path(urlsplit(url).path).name or "download")

    def fetch() -> str:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {target.name}") as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        return digest.hexdigest()

    try:
        got = with_retry(fetch, f"data source {url}", f"{urlsplit(url).scheme}://{urlsplit(url).netloc}",
                         "check the URL and the network (a proxy: set HTTPS_PROXY), or download the file by hand into "
                         "data/external/ and use a path source")
    except urllib.error.HTTPError as e:
        raise PipelineError(f"could not download {url}: {e.code} {e.reason}; check the URL (or download it by hand "
                            "into data/external/ and use a path source)") from None
    if sha256 and got != sha256.lower():
        raise PipelineError(f"{url} has sha256 {got}, not the {sha256} the params expect; check the URL, "
                            "or update sha256 if the file was meant to change")
    return {"source": "url", "url": url, "sha256": got, "bytes": target.stat().st_size}


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def download_modelscope(repo_id: str, revision: str, out: Path, *, repo_type: str = "model",
                        patterns: list[str] | None = None) -> dict:
    try:
        from modelscope import snapshot_download
    except ImportError as e:
        raise PipelineError("a modelscope source needs the modelscope package: pip install modelscope==1.40.2") from e
    endpoint = os.environ.get("MODELSCOPE_DOMAIN", "https://www.modelscope.cn")
    with_retry(lambda: snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_dir=str(out),
                                         allow_patterns=MODEL_FILES if repo_type == "model" else patterns),
               f"{repo_type} {repo_id}@{revision}", endpoint)
    for meta in (".msc", ".mv", "._____temp", ".cache"):
        target = out / meta
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    provenance = {"source": "modelscope", "repo_id": repo_id, "revision": revision}
    return provenance if repo_type == "model" else {**provenance, "repo_type": repo_type, "files": _files(out)}


def check_layout(path: Path) -> None:
    """Fail here, with the fix, rather than in a later stage's from_pretrained."""
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (path / name).exists()]
    if not list(path.glob("*.safetensors")):
        missing.append("*.safetensors weights (pickled .bin weights are not loaded)")
    if missing:
        raise PipelineError(f"the base model is missing {', '.join(missing)}; check model.source and its path or repo")
