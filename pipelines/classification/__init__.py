"""Spam classification: `contract.py` (parameters, results, the Classifier interface), `config.py`
(its models.yaml entry), `pipeline.py` (the local model), `remote.py` (another app's model),
`explain.py` (word occlusion), `files.py` and `data.py` (message files), `training.py` (fine-tuning)."""
