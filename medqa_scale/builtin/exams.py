"""Built-in multiple-choice sets of the embedded default, in the item form medqa_scale.data.choices
reads: a domain set asking the facts the built-in corpus teaches (which department, which likely
condition, what to do, when to go to hospital), and a retention set asking the general knowledge
only pre-training teaches (capitals, continents), which the medical QA data never mentions.

Distractors are other entries of the same column of the table, and the correct option's place is
drawn from the seed, so a model that always picks one letter scores 1/4.
"""

from __future__ import annotations

import random

from medqa_scale.builtin.corpus import CONDITIONS, COUNTRIES

LETTERS = "ABCD"
DEV_ITEMS = 5  # per set: the pool k-shot prompts draw from, never scored
DOMAIN_TEMPLATES = {
    "department": "{cond}一般在哪个科室诊治？",
    "diagnosis": "出现{s0}、{s1}和{s2}，最可能是哪种病？",
    "advice": "{cond}患者平时应注意什么？",
    "red_flag": "{cond}患者出现哪种情况应立即就医？",
}
RETENTION_TEMPLATES = {"capital": "关于{country}的首都，下列说法正确的是？", "continent": "关于{country}的位置，下列说法正确的是？"}


def domain_items(seed: int) -> list[dict]:
    """Four questions per condition of the corpus, each with three distractors from other conditions."""
    rng = random.Random(seed)
    facts = []
    for c in CONDITIONS:
        fill = {"cond": c.name, "s0": c.symptoms[0], "s1": c.symptoms[1], "s2": c.symptoms[2]}
        facts += [("department", fill, c.department, {x.department for x in CONDITIONS}),
                  ("diagnosis", fill, c.name, {x.name for x in CONDITIONS}),
                  ("advice", fill, c.advice, {x.advice for x in CONDITIONS}),
                  ("red_flag", fill, c.red_flag, {x.red_flag for x in CONDITIONS})]
    return _items("domain", [(kind, DOMAIN_TEMPLATES[kind].format(**fill), right, pool) for kind, fill, right, pool in facts], rng)


def retention_items(seed: int) -> list[dict]:
    """Two questions per country, its capital and its continent, each option a statement as
    pre-training states it ("法国的首都是巴黎。"): a tiny model knows a fact in the words it learned
    it in, and the statement's own words cue it where a bare name after the question would not."""
    rng = random.Random(seed)
    facts = []
    for c in COUNTRIES:
        facts += [("capital", RETENTION_TEMPLATES["capital"].format(country=c.name), f"{c.name}的首都是{c.capital}。",
                   {f"{c.name}的首都是{x.capital}。" for x in COUNTRIES}),
                  ("continent", RETENTION_TEMPLATES["continent"].format(country=c.name), f"{c.name}位于{c.continent}。",
                   {f"{c.name}位于{x.continent}。" for x in COUNTRIES})]
    return _items("retention", facts, rng)


def _items(role: str, facts: list[tuple[str, str, str, set[str]]], rng: random.Random) -> list[dict]:
    rng.shuffle(facts)
    items = []
    for k, (kind, question, right, pool) in enumerate(facts):
        options = rng.sample(sorted(pool - {right}), len(LETTERS) - 1)
        options.insert(rng.randrange(len(LETTERS)), right)
        file = "dev" if k < DEV_ITEMS else "test"
        items.append({"id": f"builtin-{role}:{file}:{k}", "origin": {"file": file, "location": f"item {k}"},
                      "question": question, "options": dict(zip(LETTERS, options)),
                      "answer": [LETTERS[options.index(right)]], "subject": kind})
    return items
