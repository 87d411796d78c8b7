"""Tests for medqa_scale/core/hub.py, run offline against the local Hub stand-in in hub_standin.py."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch

from support.hub_standin import assert_only_hub_api, hub_env, read_tree, save_tiny_model, served_repo  # noqa: F401
from support.local import free_port
from medqa_scale.core import hub
from medqa_scale.core.cli import PipelineError

REPO_ID = "tiny-org/tiny-qwen"

EXPECTED_HF_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json", "chat_template.jinja"}


# --- download_hf --------------------------------------------------------------------------------


def test_download_hf_fetches_pinned_commit_without_pickles(hub_env, served_repo, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    served_dir, files, state_dict = served_repo
    commit = hub_env.add_commit(REPO_ID, files)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    out = tmp_path / "out"
    out.mkdir()

    provenance = hub.download_hf(REPO_ID, "main", out)

    assert provenance == {"source": "hf", "repo_id": REPO_ID, "revision": "main", "resolved_commit": commit}
    got = read_tree(out)
    assert set(got) == EXPECTED_HF_FILES  # no .bin, no README, no .cache bookkeeping, no lock files
    assert not (out / "pytorch_model.bin").exists()
    assert not (out / ".cache").exists()
    for name, data in got.items():
        assert data == files[name], f"{name} differs from the served file"
    hub.check_layout(out)

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
    _, files, _ = served_repo
    commit_a = hub_env.add_commit(REPO_ID, files)
    newer = tmp_path / "newer"
    save_tiny_model(newer, seed=1)
    files_b = {**files, **read_tree(newer)}
    assert files_b["model.safetensors"] != files["model.safetensors"]
    commit_b = hub_env.add_commit(REPO_ID, files_b, ref=None)
    repo = hub_env.repo(REPO_ID)
    hub_env.after_info = lambda: repo["refs"].__setitem__("main", commit_b)
    out = tmp_path / "out"
    out.mkdir()

    provenance = hub.download_hf(REPO_ID, "main", out)

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
        hub.download_hf(REPO_ID, "no-such-branch", out)
    assert list(out.iterdir()) == []
    assert not any("/resolve/" in p or "/tree/" in p for p in hub_env.paths())


def test_download_hf_pickle_only_repo_fails_layout_check(hub_env, served_repo, tmp_path):
    """A repo with only pytorch_model.bin downloads no weights, and check_layout says why."""
    files = {k: v for k, v in served_repo[1].items() if k != "model.safetensors"}
    commit = hub_env.add_commit(REPO_ID, files)
    out = tmp_path / "out"
    out.mkdir()
    hub.download_hf(REPO_ID, "main", out)
    assert not list(out.glob("*.bin"))
    with pytest.raises(PipelineError, match="safetensors"):
        hub.check_layout(out)
    assert_only_hub_api(hub_env, commit)


# --- the stand-in serves dataset repos too ------------------------------------------------------


def test_stand_in_serves_dataset_repos_to_snapshot_download(hub_env, tmp_path):
    """Dataset repos live apart from model repos and answer on the Hub's dataset routes."""
    from huggingface_hub import HfApi, snapshot_download

    repo_id = "tiny-org/tiny-medqa"
    files = {
        "README.md": b"---\nlicense: mit\n---\n# tiny-medqa\n",
        "data/train.jsonl": '{"question": "发热怎么办？", "answer": "多喝水。"}\n'.encode(),
        "data/test.parquet": bytes(range(256)) * 4,  # served as an LFS file
    }
    commit = hub_env.add_commit(repo_id, files, repo_type="dataset")
    # The same id as a model is a different repo, which does not exist.
    assert ("model", repo_id) not in hub_env.repos
    assert HfApi().dataset_info(repo_id, revision="main").sha == commit
    out = tmp_path / "ds"

    snapshot_download(repo_id, repo_type="dataset", revision=commit, local_dir=out)

    got = {k: v for k, v in read_tree(out).items() if not k.startswith(".cache/")}
    assert got == files
    downloaded = {unquote(p.split(f"/datasets/{repo_id}/resolve/{commit}/", 1)[1])
                  for p in hub_env.paths("GET") if "/resolve/" in p}
    assert downloaded == set(files)
    assert_only_hub_api(hub_env, commit, repo_type="dataset")
    # Both kinds of file went through: the parquet one as an LFS blob named by its sha256, as the
    # real Hub serves a dataset's data files, the JSON lines one as a plain git blob.
    tree = {f.path: f for f in HfApi().list_repo_tree(repo_id, repo_type="dataset", revision=commit, recursive=True)}
    assert tree["data/test.parquet"].lfs.sha256 == hashlib.sha256(files["data/test.parquet"]).hexdigest()
    assert tree["data/train.jsonl"].lfs is None


# --- copy_local and check_layout ----------------------------------------------------------------


def test_copy_local_copies_model_and_skips_pickles(served_repo, tmp_path):
    served_dir, files, _ = served_repo
    out = tmp_path / "out"
    out.mkdir()

    provenance = hub.copy_local(served_dir, out)

    assert provenance == {"source": "local", "path": str(served_dir.resolve())}
    got = read_tree(out)
    assert set(got) == EXPECTED_HF_FILES
    assert not (out / "pytorch_model.bin").exists()
    assert all(got[name] == files[name] for name in got)
    hub.check_layout(out)


def test_check_layout_rejects_pickle_only_model(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(PipelineError, match="safetensors") as err:
        hub.check_layout(tmp_path)
    assert "config.json" in str(err.value) and "tokenizer_config.json" in str(err.value)


def test_check_layout_rejects_missing_weights_even_with_config(served_repo, tmp_path):
    served_dir, _, _ = served_repo
    hub.copy_local(served_dir, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(PipelineError, match=r"\*\.safetensors"):
        hub.check_layout(tmp_path)


# --- datasets and URLs: the source layer the data sources share -----------------------------------


def test_download_hf_dataset_fetches_the_pinned_commit_and_records_it(hub_env, tmp_path):
    files = {"data/train.jsonl": '{"question": "头痛？", "answer": "休息。"}\n'.encode(),
             "README.md": b"# medqa\n", "data/extra.csv": b"q,a\n"}
    commit = hub_env.add_commit("med-org/medqa", files, repo_type="dataset")
    out = tmp_path / "out"
    out.mkdir()

    provenance = hub.download_hf("med-org/medqa", "main", out, repo_type="dataset", patterns=["*.jsonl"])

    assert provenance == {"source": "hf", "repo_id": "med-org/medqa", "revision": "main", "resolved_commit": commit,
                          "repo_type": "dataset", "files": ["data/train.jsonl"]}
    assert (out / "data/train.jsonl").read_bytes() == files["data/train.jsonl"]
    assert not (out / ".cache").exists()
    assert_only_hub_api(hub_env, commit, repo_type="dataset")


def test_download_url_checks_the_sha256(file_server, tmp_path):
    root, url = file_server
    data = '{"question": "头痛？", "answer": "休息。"}\n'.encode()
    (root / "qa.jsonl").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    provenance = hub.download_url(f"{url}/qa.jsonl", tmp_path, sha256=digest)

    assert provenance == {"source": "url", "url": f"{url}/qa.jsonl", "sha256": digest, "bytes": len(data)}
    assert (tmp_path / "qa.jsonl").read_bytes() == data
    (tmp_path / "again").mkdir()
    with pytest.raises(PipelineError, match=f"has sha256 {digest}, not the {'0' * 64}"):
        hub.download_url(f"{url}/qa.jsonl", tmp_path / "again", sha256="0" * 64)


def test_download_url_failures_name_the_url_and_the_fix(file_server, tmp_path):
    _, url = file_server
    with pytest.raises(PipelineError, match=r"could not download .*/missing.jsonl: .*data/external"):
        hub.download_url(f"{url}/missing.jsonl", tmp_path)


def test_an_unreachable_hub_is_retried_once_then_one_message_names_the_endpoint_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "RETRY_AFTER_S", 0)
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", endpoint)
    calls = []

    def refused(*args, **kwargs):
        calls.append(1)
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(PipelineError) as raised:
        hub.with_retry(refused, "model Qwen/Qwen2.5-3B-Instruct@main", endpoint)
    message = str(raised.value)
    assert len(calls) == 2 and endpoint in message and "tried twice" in message
    for fix in ("HF_ENDPOINT", "source: modelscope", "source: local"):
        assert fix in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_an_answer_from_the_server_is_not_a_network_error():
    import urllib.error

    assert not hub.unreachable(urllib.error.HTTPError("http://x", 404, "Not Found", {}, None))
    assert hub.unreachable(urllib.error.URLError(ConnectionRefusedError(111, "refused")))
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as wrapped:
        assert hub.unreachable(wrapped)


def test_download_model_from_a_closed_port_prints_one_message_and_no_traceback(tmp_path):
    """`model.source: hf` with HF_ENDPOINT on a closed localhost port: exit 2, one message."""
    import os
    import shutil
    import subprocess
    import sys

    from ruamel.yaml import YAML

    from medqa_scale.core.params import read_yaml

    root = Path(__file__).resolve().parents[1]
    p = read_yaml(root / "params.yaml")
    p["model"]["source"] = "hf"
    with open(tmp_path / "params.yaml", "w", encoding="utf-8") as f:
        YAML(typ="safe", pure=True).dump(p, f)
    shutil.copytree(root / "stages", tmp_path / "stages")
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(root), "HF_ENDPOINT": endpoint}
    proc = subprocess.run([sys.executable, "-m", "stages.download_model"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and endpoint in errors[0] and "tried twice" in errors[0] and "HF_ENDPOINT" in errors[0]
    assert "retrying in" in proc.stderr  # the retry is logged as it happens


def test_an_unreachable_url_source_names_the_server_and_the_manual_route(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "RETRY_AFTER_S", 0)
    url = f"http://127.0.0.1:{free_port()}/qa.jsonl"
    with pytest.raises(PipelineError, match=r"could not reach http://127\.0\.0\.1:\d+ for data source .*tried twice.*"
                                            r"data/external/ and use a path source"):
        hub.download_url(url, tmp_path)
