"""Image generation: `contract.py` (parameters, results, the ImageGenerator interface), `config.py`
(its models.yaml entry and schedulers), `pipeline.py` (the local diffusion pipeline), `speedups.py`
(CPU speed-ups, GPU memory savers), `previews.py` (cheap latent previews), `png.py` (PNG files
with their parameters), `remote.py` (another app's model)."""
