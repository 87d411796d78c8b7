"""The embedded default: a tiny Qwen2-architecture model and a synthetic Chinese medical QA
corpus, built offline from the seed. The real path imports this package only where
`model.source` or `data.source` is `builtin`."""
