"""A TF-IDF + logistic-regression spam scorer, the classical half of the blended classifier.

Word 1-2-grams and character 2-5-grams (within word boundaries), sublinear TF, then a logistic
regression whose C and class weights are chosen by cross-validation grouped by text (the grid
is searched one fit at a time, so that a training's Stop, cancel and time limit end it between
two fits, keeping the best settings found so far). Saved as
JSON (vocabularies, IDF weights, coefficients), not as a pickle: loading a model folder never
runs code from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

C_GRID = [1.0, 3.0, 10.0, 30.0, 100.0]  # inverse regularisation strengths tried by cross-validation
CLASS_WEIGHTS = [None, "balanced"]
# Used when the search is stopped before it scored any setting: the middle of the grid.
FALLBACK = {"C": 10.0, "class_weight": "balanced"}
CV_FOLDS = 5
FILE_NAME = "tfidf.json"
VECTORIZERS = {
    "words": dict(ngram_range=(1, 2), sublinear_tf=True, lowercase=True),
    "chars": dict(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True),
}


def _features():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([(name, TfidfVectorizer(**kwargs)) for name, kwargs in VECTORIZERS.items()])


class TfidfScorer:
    """P(spam) of messages from TF-IDF features and a logistic regression."""

    def __init__(self, features, coef: np.ndarray, intercept: float, params: dict):
        self.features, self.coef, self.intercept, self.params = features, coef, intercept, params

    @classmethod
    def fit(
        cls, texts: list[str], labels: list[int], seed: int = 42, keep_going: Callable[[], bool] | None = None
    ) -> TfidfScorer:
        """Vocabulary from `texts` (it uses no labels), then C and class weights by grouped CV.
        `keep_going()` is asked before each of the search's fits: once it says False the search
        ends with the best setting scored so far (FALLBACK if none)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score
        from sklearn.model_selection import StratifiedGroupKFold

        from pipelines.classification.data import normalise

        keep_going = keep_going or (lambda: True)
        features = _features().fit(texts)
        x, y = features.transform(texts), np.asarray(labels)
        folds = list(
            StratifiedGroupKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed).split(
                x, y, groups=[normalise(t) for t in texts]
            )
        )
        scores: dict[tuple, float] = {}  # (C, class_weight) -> mean spam F1 over the folds, as GridSearchCV
        for c in C_GRID:
            for class_weight in CLASS_WEIGHTS:
                fold_scores = []
                for train_rows, test_rows in folds:
                    if not keep_going():
                        break
                    fitted = LogisticRegression(C=c, class_weight=class_weight, max_iter=2000).fit(
                        x[train_rows], y[train_rows]
                    )
                    fold_scores.append(f1_score(y[test_rows], fitted.predict(x[test_rows])))
                if len(fold_scores) < len(folds):
                    break
                scores[(c, class_weight)] = float(np.mean(fold_scores))
            if len(scores) < len(CLASS_WEIGHTS) * (C_GRID.index(c) + 1):
                break
        (c, class_weight), cv_f1 = (
            max(scores.items(), key=lambda kv: kv[1]) if scores else (tuple(FALLBACK.values()), None)
        )
        best = LogisticRegression(C=c, class_weight=class_weight, max_iter=2000).fit(x, y)
        return cls(
            features,
            best.coef_[0].astype(np.float32),
            float(best.intercept_[0]),
            {
                "C": c,
                "class_weight": class_weight,
                "cv_spam_f1": None if cv_f1 is None else round(cv_f1, 4),
                "settings_searched": len(scores),
                "settings_in_grid": len(C_GRID) * len(CLASS_WEIGHTS),
            },
        )

    def spam_probabilities(self, texts: list[str]) -> np.ndarray:
        logits = self.features.transform(texts) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))

    # -- saved as JSON -------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        vectorizers = {
            name: {"vocabulary": {term: int(i) for term, i in vec.vocabulary_.items()}, "idf": vec.idf_.tolist()}
            for name, vec in self.features.transformer_list
        }
        path = Path(folder) / FILE_NAME
        path.write_text(
            json.dumps(
                {
                    "vectorizers": vectorizers,
                    "coef": self.coef.tolist(),
                    "intercept": self.intercept,
                    "params": self.params,
                }
            ),
            encoding="utf-8",
        )
        return path

    @classmethod
    def load(cls, folder: str | Path) -> TfidfScorer:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        saved = json.loads((Path(folder) / FILE_NAME).read_text(encoding="utf-8"))
        parts = []
        for name, kwargs in VECTORIZERS.items():
            vectorizer = TfidfVectorizer(**kwargs, vocabulary=saved["vectorizers"][name]["vocabulary"])
            vectorizer.fit(["x"])  # sets up the fixed vocabulary; the IDF weights are the saved ones
            vectorizer.idf_ = np.asarray(saved["vectorizers"][name]["idf"])
            parts.append((name, vectorizer))
        return cls(
            FeatureUnion(parts), np.asarray(saved["coef"], dtype=np.float32), float(saved["intercept"]), saved["params"]
        )
