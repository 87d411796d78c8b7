"""The library of the fine-tuning data-scale study: LoRA vs QLoRA on Chinese medical QA.

The DVC stages in stages/ and the commands that are not stages import it; it never imports
stages/. Modules, one concern each:

  cli            logging set-up and the one-message exit for errors a user can fix
  params         reading params.yaml, scale labels and run names
  validation     checking every param at once (pydantic), used by the check_params stage
  durable        writes that leave the old or the new output, never half of one
  formats        question-answer files of every common container, encoding and record shape
  readers        raw question-answer records from files
  cleaning       whitespace, safe NFKC, HTML remnants, personal data, length limits
  dedup          exact and near duplicates (MinHash), leaks of held-out items
  preprocessing  records -> chats with token counts, length filter, de-duplication
  splitting      test/dev sets and nested train subsets
  chat_format    the chat format and the answer-only loss mask
  labels         the label value the loss skips
  device         device, precision and peak memory
  hub            fetching a base model from the Hugging Face hub, ModelScope or a directory
  modeling       loading the base model (4-bit for QLoRA) and its adapters
  training       TrainingArguments, DVCLive curves and training cost
  generation     greedy batched answers and their speed
  metrics        ROUGE and BLEU on Chinese text
  runinfo        library versions, hardware and resolved revisions for every run
  summary        the results table and the study's summary
  plots          the summary figures
  datacard       the data card: lengths per source
  sources        data sources: fetch, read, trace every record, report what is left out
  comparison, report     setups over seeds, paired comparisons and the verdict; plots/report.md
  chat, export, sweep, doctor, app   the commands that are not stages (python -m medqa_scale.<name>)
  serving, browse        every run on one loaded base per precision; the test set's views (the web page)
  gguf_export    GGUF files and Ollama Modelfiles of an export
  builtin/       the embedded default (tiny model, synthetic corpus), apart from the real path
"""
