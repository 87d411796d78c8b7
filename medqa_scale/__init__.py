"""The library of the fine-tuning data-scale study: LoRA vs QLoRA on Chinese medical QA.

The DVC stages in stages/ and the commands in apps/ import it; it never imports either. Its
subpackages are layers, each importing only those below it (tests/test_layout.py enforces this):

  core/      params, validation, durable writes, cli, run records, the hub
  model/     device and precision, loading the base and adapters, the chat format
  data/      formats, sources, cleaning, dedup, preprocessing, splitting, the data card
  train/     the Trainer and loss, the cost meter, resume, memory, presets
  evaluate/  generation, metrics, comparison, summary, report, plots
  serve/     serving, browsing answers, experiments, GGUF writing and checking
  apps/      the commands: app, chat, export, doctor, sweep
  builtin/   the embedded default (tiny model, synthetic corpus), apart from the real path

docs/layout.md draws the same map with what each module holds.
"""
