"""The model as every layer uses it: the device and precision, loading the base (4-bit for QLoRA)
and its adapters, the chat format and the answer-only loss mask. Imports core only."""
