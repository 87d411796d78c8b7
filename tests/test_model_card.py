"""medqa_scale.serve.model_card: the card's metadata and body from plain values (the card an export
writes, parsed with huggingface_hub and compared with metrics/evaluate, is in tests/test_export.py).

Run: python -m pytest tests/test_model_card.py -q
"""

from __future__ import annotations

from support.hub_standin import card_metadata_error

from medqa_scale.serve.model_card import base_license, metadata, model_card


def test_a_hub_base_model_and_its_licence_reach_the_card_metadata():
    from huggingface_hub import ModelCardData

    readme = "---\nlicense: apache-2.0\nlanguage: [en]\n---\n# Qwen\n"
    sources = {"huatuo": {"provenance": {"source": "hf", "repo_id": "FreedomIntelligence/Huatuo26M-Lite",
                                         "resolved_commit": "abc"}, "kind": "hf"}}
    meta = metadata(provenance={"source": "hf", "repo_id": "Qwen/Qwen2.5-3B-Instruct", "resolved_commit": "c0ffee"},
                    license=base_license(readme), sources=sources, adapter_only=True)
    assert meta["base_model"] == "Qwen/Qwen2.5-3B-Instruct" and meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["FreedomIntelligence/Huatuo26M-Lite"] and meta["library_name"] == "peft"
    assert ModelCardData(**meta).to_dict()["base_model"] == "Qwen/Qwen2.5-3B-Instruct"
    assert base_license(None) == "unknown" and base_license("# no front matter") == "unknown"


def test_a_qlora_card_compares_with_the_4bit_base_and_says_what_is_missing():
    text = model_card(run="qlora-1k-42", method="qlora", scale="1k", seed=42,
                      provenance={"source": "hf", "repo_id": "Qwen/Qwen2.5-3B-Instruct", "resolved_commit": "c0ffee"},
                      license="other", settings={"method": "qlora", "BitsAndBytesConfig": {"load_in_4bit": True}}, sources={},
                      scores=None, reference="base-4bit", reference_scores=None, train=None, hardware=None,
                      adapter_only=True, gguf_files=[], precision="fp32")
    assert "Scores against `base-4bit`" in text and "`metrics/evaluate/qlora-1k-42.json` is missing" in text
    assert "at commit `c0ffee`" in text and "QLoRA (4-bit NF4 base)" in text and "Not medical advice" in text
    assert "training cost not recorded" in text and "--format gguf" in text
    # license "other" without a name and a link is what the hub refuses
    assert card_metadata_error(text) == 'license "other" needs license_name and license_link'
