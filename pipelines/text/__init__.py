"""Text generation: `contract.py` (parameters, streamed updates, the TextGenerator interface),
`config.py` (its models.yaml entry), `pipeline.py` (the local causal LM), `speedups.py` (CPU
speed-ups applied at load), `remote.py` (OpenAI-compatible servers and other apps)."""
