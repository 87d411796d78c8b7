"""End-to-end: the whole DAG through DVC, on an even smaller override of the embedded default.

The repository's tracked files are copied into a fresh git repo, and DVC drives the stages as a
user would: `dvc exp run -S ...` (Hydra composition, as the README shows), a second run that
must do nothing, an edited validation rule that must rerun nothing but the check, a QLoRA knob
that must invalidate only the QLoRA side (asked of `dvc status --json`), an lr change that must rerun exactly the training side, and
bad params that must stop the run before any model loads, with one message.

Run: python -m pytest tests/test_pipeline.py -q   (about 4 minutes on 2 CPU cores)
"""

import csv
import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file
from support.dvc_repo import (REFERENCES, ROOT, RUNS, SCALES, assert_ran, assert_ran_between, back_to_first_run, dvc, dvc_env,
                              exp_run, stages_of)
from support.workspace import write_params_file

from medqa_scale.core.params import read_yaml

pytestmark = pytest.mark.slow  # end-to-end DVC runs


def test_first_run_produces_every_output(repo, first_run):
    expected = stages_of(RUNS) | {
        "check_params", "download_model", "download_data", "preprocess", "data_card", "split", "generate_base",
        "generate_base_4bit", "evaluate", "download_benchmarks", "benchmark", "judge", "summarize"}
    assert_ran(first_run, expected)
    assert (repo / "models/base/model.safetensors").exists()
    assert json.loads((repo / "models/base/provenance.json").read_text())["source"] == "builtin"
    for run in RUNS + REFERENCES:
        metrics = json.loads((repo / f"metrics/evaluate/{run}.json").read_text())
        for key in ("rouge-1", "rouge-2", "rouge-l", "bleu", "lf-rouge-l", "char-bleu-4"):
            assert isinstance(metrics[key], float) and metrics[key] >= 0, (run, key)
            assert metrics["interval"][key]["low"] <= metrics[key] <= metrics["interval"][key]["high"], (run, key)
        speed = json.loads((repo / f"metrics/generate/{run}.json").read_text())
        for key in ("samples_per_second", "tokens_per_second", "peak_memory_mb"):
            assert isinstance(speed[key], float) and speed[key] >= 0, (run, key)
        assert len((repo / f"data/scores/{run}.jsonl").read_text().splitlines()) == 40
        lines = (repo / f"data/predictions/{run}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 40 and set(json.loads(lines[0])) == {"id", "group", "question", "reference", "prediction", "ran_out"}
        nll = json.loads((repo / f"metrics/likelihood/{run}.json").read_text())
        assert nll["nll"] > 0 and nll["interval"]["nll"]["low"] <= nll["nll"] <= nll["interval"]["nll"]["high"]
        assert set(metrics["health"]) == {"ran_to_max_new_tokens", "repeated_4grams", "length_ratio", "broken_characters"}
    for run in RUNS:
        assert (repo / f"models/adapters/{run}/adapter_model.safetensors").exists()
        assert (repo / f"dvclive/{run}/plots/metrics/eval/loss.tsv").exists()
        train = json.loads((repo / f"metrics/train/{run}.json").read_text())
        assert train["n_train"] == int(run.split("-")[1]) and train["best_eval_loss"] > 0
        assert 0 < train["trainable_params"] < train["total_params"]
    csv = (repo / "plots/results_summary.csv").read_text().splitlines()
    assert len(csv) == 1 + 2 + len(RUNS) and csv[1].startswith("base,") and csv[2].startswith("base-4bit,")
    assert {"nll", "nll_low", "perplexity", "rouge-l_low", "rouge-l_high", "rouge-l_seed_sd", "seeds",
            "repeated_4grams"} <= set(csv[0].split(","))
    report = (repo / "plots/report.md").read_text(encoding="utf-8")
    assert "## What each step of data bought" in report and "Rule (params `report`, fixed before the numbers)" in report
    assert "**Most cost-effective: `" in report or "**No setup qualifies" in report
    assert "| `lora-400` | `lora-200` |" in report and "## Example answers" in report
    comparisons = (repo / "plots/comparisons.csv").read_text().splitlines()
    assert len(comparisons) == 1 + len(RUNS) + 2 + 2 and {"rouge-l_p", "nll_p_holm", "nll_reading"} <= set(comparisons[0].split(","))
    for png in ("scaling", "data_scale_comparison", "method_comparison", "loss_curves", "data_card"):
        assert (repo / f"plots/{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reported_scores_match_an_independent_recomputation_from_the_answers(repo, first_run):
    # Straight from the libraries and the per-answer files, not through medqa_scale.evaluate: jieba +
    # rouge-chinese counting every n-gram (exclusive=False) over words without punctuation, the mean
    # over all answers; sacrebleu's corpus BLEU, tokenize zh; NLL per token = total NLL / total tokens.
    import unicodedata

    import jieba
    import sacrebleu
    from rouge_chinese import Rouge

    def words(text):
        return " ".join(w for w in jieba.cut(text) if w.strip() and not all(unicodedata.category(c).startswith("P") for c in w.strip()))

    for run in RUNS + REFERENCES:
        rows = [json.loads(line) for line in (repo / f"data/predictions/{run}.jsonl").read_text(encoding="utf-8").splitlines()]
        totals = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
        for row in rows:
            hyp, ref = words(row["prediction"]), words(row["reference"])
            if hyp and ref:
                for key, value in Rouge(exclusive=False).get_scores(hyp, ref)[0].items():
                    totals[key] += 100 * value["f"] / len(rows)
        bleu = sacrebleu.corpus_bleu([r["prediction"] for r in rows], [[r["reference"] for r in rows]], tokenize="zh").score
        reported = json.loads((repo / f"metrics/evaluate/{run}.json").read_text())
        for key, value in {**totals, "bleu": bleu}.items():
            assert abs(reported[key] - value) < 0.01, (run, key, reported[key], value)
        stats = [json.loads(line)["nll_stats"] for line in (repo / f"data/likelihood/{run}.jsonl").read_text().splitlines()]
        nll = sum(s[0] for s in stats) / sum(s[1] for s in stats)
        assert abs(json.loads((repo / f"metrics/likelihood/{run}.json").read_text())["nll"] - nll) < 0.01, run


def test_reported_p_values_match_an_independent_paired_bootstrap(repo, first_run):
    # One seed per setup: each resample draws the test question groups (sorted by name) with
    # replacement from numpy's default_rng(seed), as docs/evaluation.md states; the p-value is
    # (1 + #|d* - d| >= |d|) / (1 + resamples). Recomputed here from the per-answer files alone.
    import numpy as np

    params = read_yaml(repo / "params.yaml")
    resamples, seed = params["evaluate"]["bootstrap"]["resamples"], params["seed"]

    def per_answer(run):
        scores = [json.loads(line) for line in (repo / f"data/scores/{run}.jsonl").read_text().splitlines()]
        nll = [json.loads(line) for line in (repo / f"data/likelihood/{run}.jsonl").read_text().splitlines()]
        return ([r["group"] for r in scores], np.array([r["rouge-l"] for r in scores]),
                np.array([r["nll_stats"] for r in nll], dtype=float))

    groups = per_answer("base")[0]
    names = sorted(set(groups))
    member = np.array([names.index(g) for g in groups])
    drawn = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    counts = np.stack([np.bincount(row, minlength=len(names))[member] for row in drawn]).astype(float)

    def values(run):
        _, rouge, nll = per_answer(run)
        return {"rouge-l": (rouge.mean(), counts @ rouge / counts.sum(axis=1)),
                "nll": (nll[:, 0].sum() / nll[:, 1].sum(), (counts @ nll[:, 0]) / (counts @ nll[:, 1]))}

    table = list(csv.DictReader((repo / "plots/comparisons.csv").open(encoding="utf-8")))
    assert table
    for row in table:
        a, b = (values(name if name in REFERENCES else f"{name}-42") for name in (row["a"], row["b"]))
        for metric in ("nll", "rouge-l"):
            diff = a[metric][0] - b[metric][0]
            deltas = a[metric][1] - b[metric][1]
            p = (1 + np.sum(np.abs(deltas - diff) >= abs(diff))) / (1 + resamples)
            assert abs(float(row[f"{metric}_diff"]) - diff) < 0.01, (row["a"], row["b"], metric)
            assert abs(float(row[f"{metric}_p"]) - p) < 0.01, (row["a"], row["b"], metric, row[f"{metric}_p"], p)


def test_nested_splits_and_no_leak(repo, first_run):
    def questions(name):
        return [json.loads(line)["question"] for line in (repo / f"data/split/{name}.jsonl").read_text(encoding="utf-8").splitlines()]

    small, large = questions("train-200"), questions("train-400")
    assert len(small) == 200 and len(large) == 400 and large[:200] == small
    assert not set(large) & (set(questions("test")) | set(questions("dev")))

    def answers(name):
        return {json.loads(line)["answer"] for line in (repo / f"data/split/{name}.jsonl").read_text(encoding="utf-8").splitlines()}

    assert not answers("train-400") & (answers("test") | answers("dev"))  # no test answer is learnt verbatim
    report = json.loads((repo / "metrics/split.json").read_text())
    assert report["verbatim_held_out_in_train"] == {s: {"questions": 0, "answers": 0} for s in SCALES}


@pytest.mark.parametrize("listing,counts", [("data/processed/report.json", "metrics/preprocess.json"),
                                            ("data/split/report.json", "metrics/split.json")])
def test_every_record_left_out_is_listed_with_its_origin(repo, first_run, listing, counts):
    left_out = json.loads((repo / listing).read_text(encoding="utf-8"))["left_out"]
    assert left_out  # the built-in corpus has near duplicates and near leaks to remove
    counted = json.loads((repo / counts).read_text())
    assert len(left_out) == counted.get("skipped_total", counted.get("dropped_as_leaks"))
    for entry in left_out:
        assert entry["source"] == "builtin" and entry["file"] == "generator" and entry["location"].startswith("item ")
        assert entry["reason"] and entry["excerpt"]


def test_adapter_trained_and_only_the_adapter_saved(repo, first_run):
    weights = load_file(repo / "models/adapters/lora-400-42/adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    # LoRA's B matrices start at zero: non-zero means training moved them.
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)


def test_an_adapter_changes_the_predictions_against_the_base_model(repo, first_run):
    def predictions(run):
        return [json.loads(line)["prediction"] for line in (repo / f"data/predictions/{run}.jsonl").read_text(encoding="utf-8").splitlines()]

    base = predictions("base")
    for run in RUNS:
        assert sum(a != b for a, b in zip(base, predictions(run))) > len(base) // 2, run


def test_second_run_does_nothing(repo, first_run):
    out = dvc(repo, "repro")
    assert_ran(out, set())
    assert "Data and pipelines are up to date" in out.stdout


def test_a_changed_file_under_data_external_reruns_download_data(repo, first_run):
    extra = repo / "data/external/new.jsonl"
    extra.write_text('{"question": "头痛？", "answer": "休息。"}\n', encoding="utf-8")
    try:
        # Both gatherers read data/external/ (data and benchmark sets live there); what they gather is the
        # same, so nothing after them would rerun.
        assert set(json.loads(dvc(repo, "status", "--json").stdout)) == {"download_data", "download_benchmarks"}
    finally:
        extra.unlink()
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}


def test_editing_a_validation_rule_reruns_only_the_check(repo, first_run):
    validation = repo / "medqa_scale/core/validation.py"
    original = validation.read_text(encoding="utf-8")
    edited = original.replace("vocab_size: int = Field(ge=300)", "vocab_size: int = Field(ge=200)")
    assert edited != original
    validation.write_text(edited, encoding="utf-8")
    try:
        status = json.loads(dvc(repo, "status", "--json").stdout)
        assert set(status) == {"check_params"}  # every train@, generate@ and evaluate stage is up to date
        assert_ran(dvc(repo, "repro"), {"check_params"})
    finally:
        validation.write_text(original, encoding="utf-8")
    dvc(repo, "repro")  # the check for the original rules comes back from DVC's run cache
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}


def test_a_qlora_knob_reruns_only_the_qlora_side(repo, first_run):
    # Asked of `dvc status` (what the edit invalidates) rather than rerun: the lr experiment below
    # is the real rerun of a params change. The check runs first: its quantization file is what
    # the QLoRA stages depend on.
    back_to_first_run(repo, first_run)
    params_file = repo / "params.yaml"
    original = params_file.read_text(encoding="utf-8")
    p = read_yaml(params_file)
    p["quantization"]["bnb_4bit_use_double_quant"] = not p["quantization"]["bnb_4bit_use_double_quant"]
    write_params_file(params_file, p)
    try:
        assert set(json.loads(dvc(repo, "status", "--json").stdout)) == {"check_params"}
        assert_ran(dvc(repo, "repro", "check_params"), {"check_params"})
        qlora = [r for r in RUNS if r.startswith("qlora-")]
        # The 4-bit base is loaded with the knob too; scoring reruns only if the answers change; the exams
        # are answered on the 4-bit base too (one stage for all runs).
        assert set(json.loads(dvc(repo, "status", "--json").stdout)) == \
            {f"{s}@{r}" for r in qlora for s in ("train", "generate")} | {"generate_base_4bit", "benchmark"}
    finally:
        params_file.write_text(original, encoding="utf-8")
    dvc(repo, "repro", "check_params")  # back from DVC's run cache
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}


def test_lr_change_reruns_exactly_the_training_side(repo, first_run):
    back_to_first_run(repo, first_run)
    out = exp_run(repo, "train.lr=5e-5")
    assert_ran_between(out, {f"{s}@{r}" for r in RUNS for s in ("train", "generate")} | {"check_params"},
                       {"evaluate", "benchmark", "judge", "summarize"})  # judge: new answers (with the judge off, it asks nothing)
    info = json.loads((repo / "metrics/runinfo/train-lora-200-42.json").read_text())
    lr = info["training_arguments"]["learning_rate"]
    assert lr == 5e-05 and isinstance(lr, float)
    # `dvc plots diff` of the two experiments: one chart per curve, both experiments in it.
    first, second = (re.search(r"Ran experiment\(s\): (\S+)", p.stdout).group(1) for p in (first_run, out))
    diff = json.loads(dvc(repo, "plots", "diff", first, second, "--json").stdout)
    for name, field in (("train_loss", "train_loss"), ("eval_loss", "eval_loss"), ("rouge_l", "rouge-l"), ("bleu", "bleu")):
        (chart,) = diff["data"][name]
        rows = chart["content"]["data"]["values"]
        assert chart["type"] == "vega" and {r["rev"] for r in rows} == {first, second}, name
        if name.endswith("_loss"):  # the learning rate changed every loss curve
            curve = {rev: [r[field] for r in rows if r["rev"] == rev and r["run"] == "lora-200-42"] for rev in (first, second)}
            assert curve[first] != curve[second], name
    page = repo / "dvc_plots/index.html"  # the README's command, offline by .dvc/config
    dvc(repo, "plots", "diff", first, second)
    html = page.read_text(encoding="utf-8")
    assert "<script src" not in html and "cdn.jsdelivr" not in html and first in html and second in html
    # The README's experiments table: what people compare, every cell whole in 160 columns.
    readme = (repo / "README.md").read_text(encoding="utf-8")
    command = shlex.split(next(line for line in readme.splitlines() if line.startswith("dvc exp show --drop")))
    table = subprocess.run([sys.executable, "-m", *command, "--no-pager"], cwd=repo, capture_output=True, text=True,
                           env={**dvc_env(), "COLUMNS": "160"}, check=True).stdout
    header = next(line for line in table.splitlines() if "Experiment" in line).split()
    assert header == ["Experiment", "best_run", "best_nll", "best_nll_low", "best_nll_high", "best_rouge_l",
                      "most_cost_effective", "train.lr"], header
    assert "…" not in table and max(map(len, table.splitlines())) <= 160, table
    rows = {exp: line.split() for line in table.splitlines() for exp in (first, second) if f"[{exp}]" in line}
    assert rows[first][-1] == "0.01" and rows[second][-1] == "5e-05", table


@pytest.mark.parametrize("module, anchor, rerun", [
    # rescored, not regenerated; the judge's intervals use the same bootstrap code, so it reruns too (asking nothing)
    ("medqa_scale/evaluate/metrics.py", "ROUGE_KEYS = (", {"evaluate", "judge"}),
    ("medqa_scale/evaluate/exam_scoring.py", "SCORINGS = (", {"benchmark"}),  # no training, no answers
])
def test_editing_scoring_code_reruns_only_its_scoring_and_the_summary(repo, first_run, module, anchor, rerun):
    # summarize reruns when the scores it reads change; this edit changes none
    back_to_first_run(repo, first_run)
    path = repo / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace(anchor, f"# an edit to the scoring code\n{anchor}"), encoding="utf-8")
    try:
        assert_ran_between(dvc(repo, "repro"), rerun, {"summarize"})
    finally:
        path.write_text(original, encoding="utf-8")
    dvc(repo, "repro")
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}


def test_a_new_benchmark_set_reruns_no_training_and_no_generation(repo, first_run):
    back_to_first_run(repo, first_run)
    target = repo / "data/external/benchmarks/cmmlu_high_school_geography.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests/fixtures/benchmarks/cmmlu_high_school_geography.csv", target)
    params_file = repo / "params.yaml"
    original = params_file.read_text(encoding="utf-8")
    p = read_yaml(params_file)
    p["benchmarks"].append({"name": "geography", "role": "retention", "path": "data/external/benchmarks/cmmlu_high_school_geography.csv"})
    write_params_file(params_file, p)
    try:
        out = dvc(repo, "repro")
        # download_data reruns because data/external/ changed, gathers the same records, and stops there.
        assert_ran(out, {"check_params", "download_data", "download_benchmarks", "benchmark", "summarize"})
        metrics = json.loads((repo / "metrics/benchmark/lora-200-42.json").read_text())
        assert metrics["sets"]["geography"]["n"] == 2 and metrics["sets"]["geography"]["role"] == "retention"
        assert "geography accuracy" in (repo / "plots/report.md").read_text(encoding="utf-8")
    finally:
        params_file.write_text(original, encoding="utf-8")
        target.unlink()
    dvc(repo, "repro")
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}


def test_another_seed_adds_runs_and_reruns_none_of_the_first(repo, first_run):
    back_to_first_run(repo, first_run)
    lora = [r for r in RUNS if r.startswith("lora-")]  # LoRA alone keeps the test short; QLoRA's runs are named alike
    out = exp_run(repo, "train.seeds=[42,43]", "methods=[lora]")
    # The one evaluate stage rescores every run (seconds): no run is trained or answered again.
    assert_ran(out, stages_of([r.replace("-42", "-43") for r in lora]) | {"check_params", "evaluate", "benchmark", "judge",
                                                                         "summarize"})
    table = (repo / "plots/results_summary.csv").read_text().splitlines()
    header, first = table[0].split(","), dict(zip(table[0].split(","), table[3].split(",")))
    assert len(table) == 1 + 2 + len(lora) and first["run"] == "lora-200" and first["seeds"] == "2"
    by_run = (repo / "plots/results_by_run.csv").read_text().splitlines()
    assert len(by_run) == 1 + 2 + 2 * len(lora) and "rouge-l_seed_sd" in header
    assert "2 training seed(s) per setup (42, 43)" in (repo / "plots/report.md").read_text(encoding="utf-8")


def test_metrics_show_lists_every_run_with_its_interval(repo, first_run):
    back_to_first_run(repo, first_run)
    out = dvc(repo, "metrics", "show").stdout
    for run in RUNS + REFERENCES:
        assert f"metrics/evaluate/{run}.json" in out and f"metrics/generate/{run}.json" in out
    for key in ("rouge-1", "rouge-2", "rouge-l", "bleu", "samples_per_second", "interval.rouge-l.low",
                "interval.rouge-l.high", "most_cost_effective"):
        assert key in out, key


def test_a_sweep_that_cannot_fit_the_card_stops_in_the_params_check_before_any_download(repo, first_run):
    back_to_first_run(repo, first_run)
    base = (repo / "models/base/model.safetensors").stat().st_mtime_ns
    out = dvc(repo, "exp", "run", "-S", "profile=study", "-S", "hardware=gpu_8gb", "-S", "model=qwen2.5-7b",
              "-S", "methods=[lora]", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in text
    assert_ran(out, {"check_params"})
    assert "qwen2.5-7b with LORA needs ~16.3 GiB" in text and "the card of hardware=gpu_8gb has 8.0 GiB" in text
    assert "What to change:" in text and "fits" in text
    assert (repo / "models/base/model.safetensors").stat().st_mtime_ns == base  # nothing downloaded
    back_to_first_run(repo, first_run)


def test_bad_params_stop_the_run_before_any_model_loads_with_one_message(repo, first_run):
    back_to_first_run(repo, first_run)
    params = (repo / "params.yaml").read_text(encoding="utf-8")
    bad = re.sub(r"(?m)^  lr: .*$", "  lr: -1", params.replace("- lora\n- qlora", "- lora\n- dora"), count=1)
    bad = bad.replace("- '400'", "- 9999k").replace("- 400", "- 9999k")
    assert bad.count("dora") == 1 and "lr: -1" in bad and "9999k" in bad
    shutil.rmtree(repo / "models/base")
    (repo / "params.yaml").write_text(bad, encoding="utf-8")
    try:
        out = dvc(repo, "repro", "download_model", check=False)
    finally:
        (repo / "params.yaml").write_text(params, encoding="utf-8")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    for key in ("methods.1", "train.lr", "split.scales"):
        assert f"- {key}:" in text, key
    assert "Traceback" not in text
    assert_ran(out, {"check_params"})
    assert not (repo / "models/base").exists()
    assert not [p for p in (repo / "models").iterdir() if p.name.startswith(".")]  # no temp leftovers
