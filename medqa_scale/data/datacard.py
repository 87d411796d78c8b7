"""The data card: per source, how long questions and answers are, in characters and in tokens,
and how many records each department has where the data names departments, so a user sees
what the study trains on before spending GPU hours on it."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only, no display; before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from medqa_scale.core.durable import atomic_path  # noqa: E402

LENGTHS = [("question_chars", "question (characters)"), ("answer_chars", "answer (characters)"),
           ("prompt_tokens", "prompt (tokens)"), ("answer_tokens", "answer (tokens)")]


def length_table(records: list[dict]) -> pd.DataFrame:
    """One row per processed record: its source and its four lengths."""
    return pd.DataFrame({"source": [r.get("source") or "unknown" for r in records],
                         "department": [r.get("department") for r in records],
                         "question_chars": [len(r["question"]) for r in records],
                         "answer_chars": [len(r["answer"]) for r in records],
                         "prompt_tokens": [r["n_prompt_tokens"] for r in records],
                         "answer_tokens": [r["n_answer_tokens"] for r in records]})


def summary(table: pd.DataFrame) -> dict:
    """Per source: record count and the median and 95th percentile of each length."""
    out = {}
    for source, group in table.groupby("source", sort=True):
        out[source] = {"records": int(len(group)),
                       **{f"{col}_{stat}": float(group[col].quantile(q)) for col, _ in LENGTHS
                          for stat, q in (("median", 0.5), ("p95", 0.95))}}
        departments = group.department.dropna().value_counts()
        if len(departments):
            out[source]["departments"] = {str(k): int(v) for k, v in sorted(departments.items())}
    return out


def plot_data_card(table: pd.DataFrame, path: Path) -> None:
    has_departments = table.department.notna().any()
    panels = len(LENGTHS) + int(has_departments)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
    for ax, (col, label) in zip(axes, LENGTHS):
        sns.histplot(data=table, x=col, hue="source", bins=40, element="step", ax=ax)
        ax.set(title=label, xlabel="", ylabel="records")
    if has_departments:
        top = table.department.value_counts().head(15).index
        sns.countplot(data=table[table.department.isin(top)], y="department", hue="source", order=top, ax=axes[-1])
        axes[-1].set(title="records per department (top 15)", xlabel="records", ylabel="")
    fig.suptitle(f"Data card: {len(table)} records after cleaning, by source")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
