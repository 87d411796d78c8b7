"""From sources to split files: reading question-answer files by content, cleaning, de-duplication,
preprocessing into chats, splitting into nested train subsets, and the data card. Imports core and
model; the built-in corpus only where `source: builtin` chooses it."""
