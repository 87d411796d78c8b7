"""A web page to look at the study: ask a question once and read every run's answer side by side,
browse the test set's answers with their own scores, and read the results and the report.

Run from the repository root, after `dvc repro` (or `dvc pull`):
    python -m medqa_scale.apps.app                              # http://127.0.0.1:7860
    MEDQA_APP_AUTH=user:password python -m medqa_scale.apps.app --host 0.0.0.0 --port 8080
                                                                # other machines, behind a login
Reads:  params.yaml; for Ask, the workspace's models/base, models/adapters/<run> and
        data/params/quantization-<method>.json; for Test set, Results and Data card, the chosen
        experiment's (`dvc exp show`) data/split/test.jsonl, data/predictions/, data/scores/,
        plots/ and metrics/data_card.json.
Writes: nothing in the repository (Gradio keeps uploads and images in its own temporary folder).

Ask loads the base once in full precision and once 4-bit, with every run's adapter on its base
(medqa_scale/serve/serving.py), and answers one question at a time: other requests wait in Gradio's
queue. A run whose adapter or answers are missing shows a note in its place.

Bound to any address but this machine's, the page asks for a login and refuses to start without
one: credentials come from the environment only (MEDQA_APP_AUTH or MEDQA_APP_AUTH_FILE,
medqa_scale/serve/access.py). Each user (or, without logins, each client address) may ask
--asks-per-minute questions a minute.
"""

from __future__ import annotations

import argparse
import html
import io
import logging
import os
import re
from pathlib import Path

import pandas as pd

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline study: before the import
import gradio as gr  # noqa: E402

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.params import load_params, runs_of
from medqa_scale.evaluate.generation import GREEDY, generation_config
from medqa_scale.model.chat_format import prompt_ids, to_messages
from medqa_scale.serve.access import RateLimit, check_exposure, credentials
from medqa_scale.serve.browse import filter_answers, item, judgment_text, largest_difference, with_interval
from medqa_scale.serve.experiments import FIGURES, WORKSPACE, View, experiments, load_view, snapshot

log = logging.getLogger(__name__)

CSS = (".run-answer, #item-reference {border: 1px solid #ddd; border-radius: 6px; padding: 4px 10px; margin: 6px 0}"
       " #item-reference {background: #f6f8fa} .run-answer .scores {color: #666; margin-left: 8px}"
       " .judgments {color: #444; font-size: 0.9em}")


# --- rendering -----------------------------------------------------------------------------------

def image(data: bytes | None):
    from PIL import Image

    return None if data is None else Image.open(io.BytesIO(data))


def item_html(view: View, question_id: str) -> str:
    """A test question, its reference answer, and each run's answer with its scores and, with the
    judge on, its judgments (both orders) against the answers it was compared with."""
    if question_id not in view.questions:
        return "<p>Pick a test question.</p>"
    rows = item(view.answers, question_id, view.runs)
    cards = "".join(
        f'<div class="run-answer" data-run="{html.escape(r["run"])}"><b>{html.escape(r["run"])}</b> '
        f'<span class="scores">ROUGE-L {r["rouge-l"]:.1f} · BLEU {r["bleu"]:.1f} · char-BLEU-4 {r["char-bleu-4"]:.1f}</span>'
        f'<p class="answer-text">{html.escape(r["answer"])}</p>{judgments_html(view.judgments.get((question_id, r["run"]), []))}'
        '</div>' for r in rows.to_dict("records"))
    return (f'<div id="item-question"><b>Question</b> ({html.escape(question_id)})'
            f'<p>{html.escape(view.questions[question_id])}</p></div>'
            f'<div id="item-reference"><b>Reference answer</b><p>{html.escape(view.references[question_id])}</p></div>'
            + cards)


def judgments_html(lines: list[dict]) -> str:
    """The judge's verdicts on one answer: against each compared run, the outcome and what it said
    with this answer shown first and shown second."""
    items = []
    for line in lines:
        t = judgment_text(line)
        items.append(f'<li class="judgment" data-against="{html.escape(line["against"])}">against '
                     f'<b>{html.escape(line["against"])}</b>: <b class="outcome">{html.escape(t["outcome"])}</b>'
                     f'<br>this answer shown first: {html.escape(t["first"])}'
                     f'<br>this answer shown second: {html.escape(t["second"])}</li>')
    return f'<ul class="judgments">{"".join(items)}</ul>' if items else ""


def report_without_images(report: str | None) -> str:
    """report.md with its figures (relative links the page cannot serve) replaced by a pointer:
    the page shows them above."""
    if report is None:
        return "No report yet: run `dvc repro summarize`."
    return re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"*(figure \1: shown above)*", report)


# --- the page ------------------------------------------------------------------------------------

def ask_runs(params: dict) -> tuple[list[str], dict[str, str], object | None]:
    """The runs Ask answers with, notes for those it cannot, and the loaded models (None if none)."""
    from medqa_scale.model.device import resolve_precision
    from medqa_scale.serve.runs import run_inputs
    from medqa_scale.serve.serving import load_shared_models

    runs, inputs, notes = runs_of(params["methods"], params["split"]["scales"], params["train"]["seeds"]), {}, {}
    for r in runs:
        try:
            inputs[r] = run_inputs(r)
        except PipelineError as e:
            notes[r] = f"Not available: {e}"
    if not inputs:
        return runs, notes, None
    shared = load_shared_models(Path("models/base"), inputs, precision=resolve_precision(params["precision"]),
                                trust_remote_code=params["model"]["trust_remote_code"],
                                template_kwargs=params["model"]["chat_template_kwargs"])
    return runs, notes, shared


def build(params: dict, shared, notes: dict[str, str], runs: list[str], labels: dict[str, str | None],
          limit: RateLimit | None = None):
    """The Gradio page; `limit` caps each user's asks."""
    from medqa_scale.serve.runs import check_lengths
    from medqa_scale.serve.serving import stream_answer

    e, pre = params["evaluate"], params["preprocess"]
    config = None if shared is None else generation_config(shared.tokenizer, e["generation"], e["max_new_tokens"])
    builtin = params["model"]["source"] == "builtin"
    views: dict[str, View] = {}

    def view_of(label: str) -> View:
        if label not in views:
            views[label] = load_view(snapshot(labels.get(label)))
        return views[label]

    def ask(question: str, max_new_tokens: float, request: gr.Request = None):
        values = {r: notes.get(r, "") for r in runs}
        question = (question or "").strip()
        if not question:
            yield ["Type a question first.", *values.values()]
            return
        who = (getattr(request, "username", None) or getattr(getattr(request, "client", None), "host", None) or "anyone")
        if limit is not None and (wait := limit.wait(who)):
            yield [f"**Refused:** over {limit.per_minute} questions a minute for `{who}`; ask again in {wait:.0f} s "
                   "(--asks-per-minute)", *values.values()]
            return
        chat = to_messages(question, None, pre["system_prompt"])
        try:
            if len(question) > pre["max_question_chars"]:
                raise PipelineError(f"the question is {len(question)} characters, over preprocess.max_question_chars "
                                    f"({pre['max_question_chars']}): shorten it")
            if shared is not None:
                check_lengths([prompt_ids(shared.tokenizer, chat, shared.template_kwargs)], pre["max_source_len"])
        except PipelineError as refusal:
            yield [f"**Refused:** {refusal}", *values.values()]
            return
        for r in runs:
            if r in notes:
                continue
            for text in stream_answer(shared, r, chat, config, int(max_new_tokens)):
                values[r] = text
                yield [f"Answering as `{r}`…", *values.values()]
        yield ["Done: every run answered.", *values.values()]

    def show_experiment(label: str):
        if labels.get(label) is None:
            views.pop(label, None)  # the workspace changes under a running page (dvc repro): read it afresh
        v = view_of(label)
        choices = [(f"{i} · {q[:60]}", i) for i, q in v.questions.items()]
        first = next(iter(v.questions), None)
        results = None if v.results is None else with_interval(v.results)
        card_png, card = v.data_card
        missing = "\n".join(f"- {m}" for m in v.missing) or "Every run has answers and scores."
        return (gr.update(choices=choices, value=first), item_html(v, first), missing,
                gr.update(choices=v.runs, value=[]), browse(label, [], 0, 100, False, "rouge-l", False),
                results if results is not None else pd.DataFrame({"note": ["No results yet: run `dvc repro summarize`."]}),
                *(image(v.figures.get(name)) for name in FIGURES), report_without_images(v.report),
                image(card_png), card or {"note": "No data card yet: run `dvc repro data_card`."},
                gr.update(choices=v.runs, value=v.runs[0]), gr.update(choices=v.runs, value=v.runs[-1]))

    def pick_largest(label: str, run_a: str, run_b: str):
        v = view_of(label)
        try:
            qid = largest_difference(v.answers, run_a, run_b)
        except ValueError as err:
            gr.Warning(str(err))
            return gr.update(), item_html(v, None)
        return gr.update(value=qid), item_html(v, qid)

    def browse(label: str, chosen: list[str], low: float, high: float, scale_lost: bool, sort_by: str, descending: bool):
        v = view_of(label)
        rows = filter_answers(v.answers, v.questions, runs=chosen, low=low, high=high, scale_lost=scale_lost,
                              sort_by=sort_by, descending=descending)
        return rows.round(2)

    def open_row(label: str, evt: gr.SelectData):
        qid = evt.row_value[0]
        return gr.update(value=qid), item_html(view_of(label), qid)

    with gr.Blocks(title="medqa-scale: the study's answers") as page:
        gr.Markdown("# What fine-tuning data is worth: every run's answers, side by side")
        gr.Markdown(("**The embedded default is a tiny model trained on synthetic data.** " if builtin else "")
                    + "No answer on this page is medical advice.", elem_id="notice")
        experiment = gr.Dropdown(list(labels), value=WORKSPACE, elem_id="experiment",
                                 label="Experiment shown in Test set, Results and Data card (`dvc exp show`); "
                                       "Ask answers with the workspace's models")
        with gr.Tabs():
            with gr.Tab("Ask", id="ask"):
                settings = {**GREEDY, **e["generation"]}
                gr.Markdown("Answers stream from the base model and every trained run in this workspace, one run after "
                            "another, with the generate stage's decoding: " + ", ".join(f"`{k}={v}`" for k, v in settings.items())
                            + f"; the system prompt `{pre['system_prompt']}`; prompts up to "
                            f"{pre['max_source_len']} tokens (preprocess.max_source_len).")
                with gr.Row():
                    question = gr.Textbox(label="Medical question", lines=2, scale=4, elem_id="question",
                                          max_length=pre["max_question_chars"])
                    max_new = gr.Slider(1, 4 * e["max_new_tokens"], value=e["max_new_tokens"], step=1, scale=1,
                                        label="max new tokens (evaluate.max_new_tokens by default)", elem_id="max-new-tokens")
                ask_button = gr.Button("Ask every run", variant="primary", elem_id="ask")
                status = gr.Markdown(elem_id="ask-status")
                boxes = []
                with gr.Row(equal_height=True):
                    for r in runs:
                        boxes.append(gr.Textbox(value=notes.get(r, ""), label=r, lines=5, interactive=False,
                                                elem_id=f"answer-{r}", elem_classes=["answer"], min_width=260))
                ask_button.click(ask, [question, max_new], [status, *boxes], concurrency_limit=1, concurrency_id="models",
                                 api_name="ask")
                question.submit(ask, [question, max_new], [status, *boxes], concurrency_limit=1, concurrency_id="models",
                                api_visibility="private")

            with gr.Tab("Test set", id="test"):
                missing_note = gr.Markdown(elem_id="missing")
                with gr.Row():
                    picked = gr.Dropdown(label="Test question", scale=3, elem_id="test-question")
                    run_a = gr.Dropdown(label="run A", scale=1, elem_id="run-a")
                    run_b = gr.Dropdown(label="run B", scale=1, elem_id="run-b")
                    largest = gr.Button("Largest ROUGE-L difference between A and B", scale=1, elem_id="largest")
                shown_item = gr.HTML(elem_id="item")
                with gr.Accordion("Browse every answer: filter and sort by score", open=True):
                    with gr.Row():
                        chosen = gr.Dropdown(multiselect=True, label="runs (none: all)", elem_id="filter-runs")
                        low = gr.Slider(0, 100, value=0, step=1, label="ROUGE-L from")
                        high = gr.Slider(0, 100, value=100, step=1, label="ROUGE-L to")
                    with gr.Row():
                        scale_lost = gr.Checkbox(label="only answers where the larger scale lost to the next smaller one",
                                                 elem_id="scale-lost")
                        sort_by = gr.Dropdown(["rouge-l", "bleu", "char-bleu-4"], value="rouge-l", label="sort by")
                        descending = gr.Checkbox(label="highest first")
                    table = gr.Dataframe(interactive=False, wrap=True, max_height=600, elem_id="answers-table")
            with gr.Tab("Results", id="results"):
                results = gr.Dataframe(interactive=False, label="Results with 95% intervals", elem_id="results-table")
                with gr.Row():
                    figures = [gr.Image(label=caption, type="pil", interactive=False) for caption in FIGURES.values()]
                report = gr.Markdown(elem_id="report")
            with gr.Tab("Data card", id="card"):
                card_image = gr.Image(label="Data card", type="pil", interactive=False)
                card_json = gr.JSON(label="metrics/data_card.json")

        filters = [experiment, chosen, low, high, scale_lost, sort_by, descending]
        outputs = [picked, shown_item, missing_note, chosen, table, results, *figures, report, card_image, card_json,
                   run_a, run_b]
        page.load(show_experiment, experiment, outputs, concurrency_limit=8)
        experiment.change(show_experiment, experiment, outputs, concurrency_limit=8)
        picked.input(lambda label, qid: item_html(view_of(label), qid), [experiment, picked], shown_item)
        largest.click(pick_largest, [experiment, run_a, run_b], [picked, shown_item], concurrency_limit=8)
        for f in filters[1:]:
            f.change(browse, filters, table, concurrency_limit=8)
        table.select(open_row, experiment, [picked, shown_item], concurrency_limit=8)
    return page


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m medqa_scale.apps.app", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    ap.add_argument("--queue-size", type=int, default=64, help="requests that may wait for the models (default 64)")
    ap.add_argument("--asks-per-minute", type=int, default=30,
                    help="questions each user (or client address) may ask a minute; 0: no limit (default 30)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logins = credentials(dict(os.environ))
    check_exposure(args.host, logins)  # before anything is loaded
    from medqa_scale.model.device import pin_device

    params = load_params()
    pin_device(params["device"])
    runs, notes, shared = ask_runs(params)
    for r, note in notes.items():
        log.warning("%s: %s", r, note)
    page = build(params, shared, notes, runs, experiments(), RateLimit(args.asks_per_minute))
    # One generation at a time (the runs share the models); the rest wait in a bounded queue.
    page.queue(default_concurrency_limit=1, max_size=args.queue_size)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])  # no web fonts
    if logins:
        log.info("login required: %d user(s) from the environment", len(logins))
    page.launch(server_name=args.host, server_port=args.port, theme=theme, css=CSS, ssr_mode=False, show_error=True,
                footer_links=["api"], auth=logins or None)


if __name__ == "__main__":
    run(main)
