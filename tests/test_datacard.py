"""medqa_scale.data.datacard: the length table, its per-source summary and the figure.

Run: python -m pytest tests/test_datacard.py -q
"""

from __future__ import annotations

from medqa_scale.data.datacard import length_table, plot_data_card, summary


def records():
    return ([{"source": "a", "question": "头痛？", "answer": "休息。", "n_prompt_tokens": 10, "n_answer_tokens": 4}] * 3
            + [{"source": "b", "question": "咳嗽怎么办？", "answer": "多喝温水。", "n_prompt_tokens": 12, "n_answer_tokens": 6}])


def test_length_table_and_summary_per_source():
    table = length_table(records())
    assert list(table.columns) == ["source", "department", "question_chars", "answer_chars", "prompt_tokens", "answer_tokens"]
    s = summary(table)
    assert s["a"]["records"] == 3 and s["b"]["records"] == 1
    assert s["a"]["question_chars_median"] == 3.0 and s["b"]["answer_tokens_p95"] == 6.0


def test_the_figure_is_a_png_with_the_same_bytes_each_time(tmp_path):
    for name in ("x.png", "y.png"):
        plot_data_card(length_table(records()), tmp_path / name)
    data = (tmp_path / "x.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == (tmp_path / "y.png").read_bytes()


def test_departments_are_counted_and_drawn_where_the_data_names_them(tmp_path):
    rows = records() + [{"source": "c", "question": "胃痛？", "answer": "少吃辛辣。", "n_prompt_tokens": 9,
                         "n_answer_tokens": 5, "department": d} for d in ("消化内科", "消化内科", "儿科")]
    table = length_table(rows)
    s = summary(table)
    assert s["c"]["departments"] == {"儿科": 1, "消化内科": 2} and "departments" not in s["a"]
    plot_data_card(table, tmp_path / "d.png")
    plot_data_card(length_table(records()), tmp_path / "n.png")
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "d.png").read_bytes()) != len((tmp_path / "n.png").read_bytes())  # a fifth panel
