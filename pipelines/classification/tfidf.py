"""The classical half of the blended spam classifier: TF-IDF and frozen sentence embeddings into
a logistic regression.

Word 1-2-grams and character 2-5-grams (within word boundaries), sublinear TF, and, when an
encoder is given, the base encoder's mean-pooled sentence embedding (unit length, times
`embedding_weight`; the encoder is not fine-tuned: its embeddings mean the same on messages it
never saw, which is what lifted this half over TF-IDF alone in `python -m benchmarks.spam --cv`).
Then a logistic regression whose C and class weights are chosen by cross-validation grouped by
text. Saved as JSON (vocabularies, IDF weights, coefficients), not as a pickle: loading a model
folder never runs code from it; the encoder is saved beside it with `save_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

C_GRID = [1.0, 3.0, 10.0, 30.0, 100.0]  # inverse regularisation strengths tried by cross-validation
CV_FOLDS = 5
FILE_NAME = "tfidf.json"
ENCODER_FOLDER = "sentence_encoder"  # the frozen encoder of the embedding features, inside the model folder
ENCODER_MAX_LENGTH = 128  # tokens embedded per message (99.8% of the SMS collection is shorter)
VECTORIZERS = {
    "words": dict(ngram_range=(1, 2), sublinear_tf=True, lowercase=True),
    "chars": dict(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True),
}


def _features():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([(name, TfidfVectorizer(**kwargs)) for name, kwargs in VECTORIZERS.items()])


class SentenceEncoder:
    """Mean-pooled, unit-length sentence embeddings of a frozen encoder (as sentence-transformers
    computes them for all-MiniLM-L6-v2), on the CPU."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer

    @classmethod
    def from_pretrained(cls, source: str | Path) -> "SentenceEncoder":
        from transformers import AutoModel, AutoTokenizer

        return cls(AutoModel.from_pretrained(source), AutoTokenizer.from_pretrained(source))

    def save_pretrained(self, folder: str | Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    @property
    def memory_mb(self) -> float:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) / 2**20

    def __call__(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        from pipelines.core.limits import chars_for_tokens

        readable = chars_for_tokens(ENCODER_MAX_LENGTH + 1)  # tokenize no more than can be embedded
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: little padding
        vectors = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = self.tokenizer([texts[i][:readable] for i in chunk], truncation=True, max_length=ENCODER_MAX_LENGTH,
                                       padding=True, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
                vectors[chunk] = torch.nn.functional.normalize(mean.float(), dim=-1).numpy()
        return vectors


class TfidfScorer:
    """P(spam) of messages from TF-IDF features (and sentence embeddings) and a logistic regression."""

    def __init__(self, features, coef: np.ndarray, intercept: float, params: dict,
                 encoder: SentenceEncoder | None = None, embedding_weight: float = 0.0):
        self.features, self.coef, self.intercept, self.params = features, coef, intercept, params
        self.encoder, self.embedding_weight = encoder, embedding_weight

    @classmethod
    def fit(cls, texts: list[str], labels: list[int], seed: int = 42, encoder: SentenceEncoder | None = None,
            embedding_weight: float = 1.0) -> "TfidfScorer":
        """Vocabulary from `texts` (it uses no labels), then C and class weights by grouped CV."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

        from pipelines.classification.data import normalise

        scorer = cls(_features().fit(texts), np.zeros(0, np.float32), 0.0, {}, encoder, embedding_weight if encoder else 0.0)
        search = GridSearchCV(
            LogisticRegression(max_iter=2000), {"C": C_GRID, "class_weight": [None, "balanced"]}, scoring="f1",
            cv=StratifiedGroupKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed),
        )
        search.fit(scorer.matrix(texts), labels, groups=[normalise(t) for t in texts])
        best = search.best_estimator_
        scorer.coef, scorer.intercept = best.coef_[0].astype(np.float32), float(best.intercept_[0])
        scorer.params = {"C": search.best_params_["C"], "class_weight": search.best_params_["class_weight"],
                         "embedding_weight": scorer.embedding_weight, "cv_spam_f1": round(float(search.best_score_), 4)}
        return scorer

    def matrix(self, texts: list[str]):
        """The features of `texts`: TF-IDF columns, then the weighted embedding's."""
        import scipy.sparse as sparse

        tfidf = self.features.transform(texts)
        if self.encoder is None:
            return tfidf
        return sparse.hstack([tfidf, sparse.csr_matrix(self.embedding_weight * self.encoder(texts))]).tocsr()

    def spam_probabilities(self, texts: list[str]) -> np.ndarray:
        logits = self.matrix(texts) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))

    @property
    def memory_mb(self) -> float:
        return self.encoder.memory_mb if self.encoder is not None else 0.0

    # -- saved as JSON (and the encoder's folder) --------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        vectorizers = {
            name: {"vocabulary": {term: int(i) for term, i in vec.vocabulary_.items()}, "idf": vec.idf_.tolist()}
            for name, vec in self.features.transformer_list
        }
        path = Path(folder) / FILE_NAME
        saved = {"vectorizers": vectorizers, "coef": self.coef.tolist(), "intercept": self.intercept, "params": self.params}
        if self.encoder is not None:
            self.encoder.save_pretrained(Path(folder) / ENCODER_FOLDER)
            saved |= {"encoder": ENCODER_FOLDER, "embedding_weight": self.embedding_weight}
        path.write_text(json.dumps(saved), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "TfidfScorer":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        saved = json.loads((Path(folder) / FILE_NAME).read_text(encoding="utf-8"))
        parts = []
        for name, kwargs in VECTORIZERS.items():
            vectorizer = TfidfVectorizer(**kwargs, vocabulary=saved["vectorizers"][name]["vocabulary"])
            vectorizer.fit(["x"])  # sets up the fixed vocabulary; the IDF weights are the saved ones
            vectorizer.idf_ = np.asarray(saved["vectorizers"][name]["idf"])
            parts.append((name, vectorizer))
        encoder = SentenceEncoder.from_pretrained(Path(folder) / saved["encoder"]) if saved.get("encoder") else None
        return cls(FeatureUnion(parts), np.asarray(saved["coef"], dtype=np.float32), float(saved["intercept"]), saved["params"],
                   encoder, float(saved.get("embedding_weight", 0.0)))
