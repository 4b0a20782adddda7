"""`python -m pipelines.train_classifier`: fine-tune a spam classifier (pipelines/classification/training.py)."""

import sys

from pipelines.classification.training import main

if __name__ == "__main__":
    sys.exit(main())
