"""A copy of the repository as a git + DVC project, run once on a small override of the embedded
default, shared by the tests that drive DVC (test_pipeline, test_remote): the first run takes
minutes, so it is made once per session. A test that changes the workspace starts from the first
run's state with `back_to_first_run`.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METHODS, SCALES = ["lora", "qlora"], ["200", "400"]
RUNS = [f"{m}-{s}-42" for m in METHODS for s in SCALES]
REFERENCES = ["base", "base-4bit"]


def stages_of(runs) -> set[str]:
    """Every stage that trains and answers with the given runs (one `evaluate` stage scores them all)."""
    return {f"{stage}@{r}" for r in runs for stage in ("train", "generate")}


SMALL = [
    "model.builtin.pretrain.steps=40", "model.builtin.pretrain.passages=400", "model.builtin.vocab_size=1500",
    "data.sources=[{builtin:800}]", "split.dev_size=40", "split.test_size=40", f"split.scales=[{','.join(SCALES)}]",
    "train.args.eval_steps=0.5", "train.args.save_steps=0.5", "train.seeds=[42]", "evaluate.max_new_tokens=32",
]


def exp_run(repo: Path, *overrides: str) -> subprocess.CompletedProcess:
    return dvc(repo, "exp", "run", *[a for o in SMALL + list(overrides) for a in ("-S", o)])


PARAMS_READS = Path(__file__).resolve().parent / "params_reads"  # its sitecustomize records what stages read


def dvc_env() -> dict:
    """The environment DVC runs in: this interpreter's bin first (stages and queue workers), no
    analytics, and every stage's params reads recorded into RECORDS (support/params_reads/)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    if RECORDS["dir"] is not None:
        env["MEDQA_RECORD_PARAMS"] = str(RECORDS["dir"])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PARAMS_READS), os.environ.get("PYTHONPATH")]))
    return env


RUN_FOLDERS = ("metrics/likelihood", "metrics/evaluate", "metrics/generate", "metrics/train", "metrics/runinfo",
               "metrics/benchmark", "data/likelihood", "data/scores", "data/predictions", "data/benchmark",
               "dvclive")  # one file or folder per run
RECORDS = {"dir": None}  # the folder of params reads, set by the repo fixture


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=dvc_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def assert_ran(proc: subprocess.CompletedProcess, expected: set[str]) -> None:
    """The stages that ran are exactly `expected`; on failure, say what DVC said about each stage."""
    ran = ran_stages(proc.stdout)
    said = [line for line in proc.stdout.splitlines() if line.startswith(("Running stage", "Stage "))]
    assert ran == expected, f"ran {sorted(ran)}, expected {sorted(expected)}; DVC said:\n" + "\n".join(said)


def assert_ran_between(proc: subprocess.CompletedProcess, required: set[str], allowed: set[str]) -> None:
    """Every stage of `required` ran, and nothing outside `allowed` did. Scoring and the summary
    rerun only when the answers changed, which a changed adapter need not bring."""
    ran = ran_stages(proc.stdout)
    said = [line for line in proc.stdout.splitlines() if line.startswith(("Running stage", "Stage "))]
    assert required <= ran <= required | allowed, f"ran {sorted(ran)}, required {sorted(required)}, " \
        f"allowed {sorted(allowed)}; DVC said:\n" + "\n".join(said)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture(scope="session")
def repo(tmp_path_factory) -> Path:
    RECORDS["dir"] = tmp_path_factory.mktemp("params_reads")
    repo = tmp_path_factory.mktemp("pipeline")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    # The committed per-run figures are the embedded default's (three seeds, other scales): the small
    # run below writes its own, and back_to_first_run's removal of other seeds must not touch its deps.
    for folder in RUN_FOLDERS:
        shutil.rmtree(repo / folder, ignore_errors=True)
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    return repo


@pytest.fixture(scope="session")
def first_run(repo):
    return exp_run(repo)


def back_to_first_run(repo: Path, first_run: subprocess.CompletedProcess) -> None:
    """The workspace as the first run left it: each experiment below is compared with it alone,
    whatever ran before (Hydra recomposes params.yaml from conf/ for every `exp run`). Runs of
    other seeds that an experiment added stay in the workspace as files no param names; summarize
    depends on their directories, so they are removed."""
    name = re.search(r"Ran experiment\(s\): (\S+)", first_run.stdout).group(1)
    dvc(repo, "exp", "apply", name)
    for folder in RUN_FOLDERS:
        for path in (repo / folder).glob("*"):
            seed = re.search(r"-(\d+)(\.jsonl?)?$", path.name)
            if seed and seed.group(1) != "42":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}
