"""Beyond one machine: a DVC remote on a real S3-compatible server, experiments shared between
clones, and queued experiments run by parallel workers, all through DVC's own commands.

The S3 server is moto in server mode on a free localhost port, started here (the way DVC's own
tests do); credentials reach DVC through `dvc remote modify --local` (git-ignored
.dvc/config.local) or the environment, as the README shows, never through a tracked file.

Run: python -m pytest tests/test_remote.py -q   (uses the session's small DVC run, see dvc_repo.py)
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.dvc_repo import RUNS, SMALL, assert_ran, back_to_first_run, dvc, dvc_env, git

pytestmark = pytest.mark.slow  # DVC remotes, clones and queued workers

BUCKET = "medqa-dvc"
# Made at run time: the repository under test holds this file, so a literal would be found in it.
ACCESS_KEY = "AKIA" + secrets.token_hex(8).upper()
SECRET = secrets.token_urlsafe(30)  # searched for in every tracked file and in the git history below
OUTPUTS = ["models/base/model.safetensors", *(f"models/adapters/{r}/adapter_model.safetensors" for r in RUNS),
           *(f"data/predictions/{r}.jsonl" for r in [*RUNS, "base", "base-4bit"]), "data/split/test.jsonl",
           *(f"dvclive/{r}/plots/metrics/eval/loss.tsv" for r in RUNS), "data/scores/base.jsonl"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server with an empty bucket; its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                 aws_secret_access_key=SECRET).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def add_remote(repo: Path, endpoint: str) -> None:
    """The README's S3 recipe: the remote and its endpoint in .dvc/config (tracked), the keys in
    .dvc/config.local (git-ignored)."""
    dvc(repo, "remote", "add", "-d", "-f", "storage", f"s3://{BUCKET}/cache")
    dvc(repo, "remote", "modify", "storage", "endpointurl", endpoint)
    set_keys(repo)


def set_keys(repo: Path) -> None:
    dvc(repo, "remote", "modify", "--local", "storage", "access_key_id", ACCESS_KEY)
    dvc(repo, "remote", "modify", "--local", "storage", "secret_access_key", SECRET)


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def tracked_text(repo: Path) -> str:
    files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    # Not every tracked file is UTF-8 (a benchmark fixture is GBK, as such files come): bytes, decoded leniently.
    history = subprocess.run(["git", "log", "-p", "--all"], cwd=repo, capture_output=True, check=True).stdout.decode("utf-8", "replace")
    return history + "".join((repo / f).read_text(encoding="utf-8", errors="replace") for f in files if (repo / f).is_file())


@pytest.fixture(scope="module")
def pushed(repo, first_run, s3):
    """The first run committed (dvc.lock, metrics) with an S3 remote, every output pushed; a bare
    git repository as the shared `origin`."""
    back_to_first_run(repo, first_run)
    add_remote(repo, s3)
    commit(repo, "first run, with an S3 remote")
    dvc(repo, "push")
    origin = repo.parent / f"{repo.name}-origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(origin)], check=True)
    # The session's repository goes back to its first commit and config: its experiments (the first
    # run among them) were made without a remote, and `dvc exp apply` must find their config valid.
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    (repo / ".dvc/config.local").unlink()
    return origin


def clone(origin: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(dest)], check=True)
    set_keys(dest)
    return dest


def test_a_fresh_clone_pulls_every_output_and_reruns_nothing(repo, pushed, tmp_path):
    other = clone(pushed, tmp_path / "clone")
    assert not (other / "models").exists()
    dvc(other, "pull")
    for name in OUTPUTS:
        assert (other / name).read_bytes() == (repo / name).read_bytes(), name
    out = dvc(other, "repro")
    assert_ran(out, set())
    assert "Data and pipelines are up to date" in out.stdout


def test_no_credential_lands_in_a_tracked_file(pushed, tmp_path):
    # What a teammate gets: every tracked file and the whole history of the shared repository.
    other = clone(pushed, tmp_path / "clone")
    text = tracked_text(other)
    assert "endpointurl" in text  # the remote's address is shared...
    assert SECRET not in text and ACCESS_KEY not in text  # ...its keys are not
    assert SECRET in (other / ".dvc/config.local").read_text()  # where the README puts them
    ignored = subprocess.run(["git", "check-ignore", ".dvc/config.local"], cwd=other, capture_output=True, text=True)
    assert ignored.returncode == 0


def test_the_environment_is_enough_for_credentials(pushed, s3, tmp_path):
    # CI machines and clusters pass keys as variables: no config.local at all.
    other = tmp_path / "env-clone"
    subprocess.run(["git", "clone", "-q", str(pushed), str(other)], check=True)
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    proc = subprocess.run([*dvc_command(), "pull", "data/split"], cwd=other, env={**os.environ, **env},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (other / "data/split/test.jsonl").exists()


def dvc_command() -> list[str]:
    return [sys.executable, "-m", "dvc"]


def exp_show(repo: Path) -> dict[str, dict]:
    """Experiment name -> its flattened metrics, from `dvc exp show --json`."""
    out = {}
    for baseline in json.loads(dvc(repo, "exp", "show", "--json").stdout):
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                files = (rev.get("data") or {}).get("metrics") or {}
                out[rev.get("name") or exp.get("name")] = {path: f.get("data") for path, f in files.items()}
    return out


def test_an_experiment_run_in_one_clone_is_pulled_into_another_without_rerunning(pushed, tmp_path):
    a, b = clone(pushed, tmp_path / "a"), clone(pushed, tmp_path / "b")
    dvc(a, "pull")
    out = dvc(a, "exp", "run", "--name", "fewer-resamples", *exp_args("evaluate.bootstrap.resamples=2000"))
    assert "Running stage 'evaluate'" in out.stdout and "Running stage 'train@" not in out.stdout
    dvc(a, "exp", "push", "origin", "fewer-resamples")
    dvc(b, "exp", "pull", "origin", "fewer-resamples")
    shown = exp_show(b)
    assert "fewer-resamples" in shown
    metrics = shown["fewer-resamples"]["metrics/evaluate/lora-200-42.json"]
    assert metrics["interval"]["resamples"] == 2000
    dvc(b, "exp", "apply", "fewer-resamples")
    dvc(b, "pull")
    status = json.loads(dvc(b, "status", "--json").stdout)
    assert status == {}, status  # its outputs came from the remote: nothing to recompute
    assert (b / "plots/report.md").read_text(encoding="utf-8") == (a / "plots/report.md").read_text(encoding="utf-8")


def exp_args(*overrides: str) -> list[str]:
    """`-S` arguments: the session's small overrides and these."""
    return [a for o in SMALL + list(overrides) for a in ("-S", o)]


def test_two_queued_experiments_run_with_two_workers(repo, first_run):
    back_to_first_run(repo, first_run)
    # A queued experiment starts from a commit: the first run's metrics (git-tracked, cache: false)
    # must be in it, as they are once a user commits a run, or every stage would rerun.
    commit(repo, "first run")
    # Not fewer than check_params allows: Holm over the report's comparisons needs p-values as small as 1/1440.
    for resamples in (1500, 2500):
        dvc(repo, "exp", "run", "--queue", "--name", f"queued-{resamples}", *exp_args(f"evaluate.bootstrap.resamples={resamples}"))
    # The workers outlive `dvc queue start` and may hold its output pipes open: no capture, and a
    # bound on the wait. The workers run on; their status is polled below.
    try:
        subprocess.run([*dvc_command(), "queue", "start", "-j", "2"], cwd=repo, env=dvc_env(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, timeout=120)
    except subprocess.TimeoutExpired:
        pass
    # Only what the changed param reaches reruns: the check, scoring and the summary.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = dvc(repo, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert "Success" in status and "Failed" not in status, status + dvc(repo, "queue", "logs", "queued-1500", check=False).stdout
    for n in (1500, 2500):
        log = dvc(repo, "queue", "logs", f"queued-{n}").stdout
        assert "Running stage 'evaluate'" in log and "Running stage 'train@" not in log, log[-3000:]
    shown = exp_show(repo)
    for n in (1500, 2500):  # each with its own metrics, from its own params
        metrics = shown[f"queued-{n}"]
        assert all(metrics[f"metrics/evaluate/{r}.json"]["interval"]["resamples"] == n for r in RUNS), n
        assert {"rouge-l", "bleu", "interval"} <= set(metrics["metrics/evaluate/lora-400-42.json"])
    # One table across the sweep, with the param that differs as a column.
    proc = subprocess.run([sys.executable, "-m", "medqa_scale.apps.sweep"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pandas as pd

    table = pd.read_csv(repo / "outputs/sweep.csv")
    queued = table[table.experiment.isin(["queued-1500", "queued-2500"])]
    assert set(queued["evaluate.bootstrap.resamples"]) == {1500, 2500} and len(queued) == 2 * (len(RUNS) + 2)
    assert (repo / "outputs/sweep.png").read_bytes()[:4] == b"\x89PNG"
    dvc(repo, "queue", "stop", "--kill", check=False)  # no worker left behind
    git(repo, "reset", "-q", "--hard", "HEAD~1")  # the session's repository as it was
