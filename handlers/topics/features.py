"""TF-IDF over the tokens of handlers/topics/text.py, as plain numpy arrays (for training;
the bot's run-time model in suggester.py repeats `transform` without numpy).

No scikit-learn at run time: it would add ~120 MB to the bot's memory for what is a few
dozen lines here. The vocabulary and the idf weights are plain data, so a trained model is
stored as JSON and float arrays (suggester.Model.save), never as a pickle that a library
upgrade could break.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from handlers.topics.text import GROUP_WEIGHTS


@dataclass
class Csr:
    """A row-compressed sparse matrix: row i is data[indptr[i]:indptr[i+1]] at indices[...]."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_features: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def rows(self) -> np.ndarray:
        """The row of every stored value."""
        return np.repeat(np.arange(self.n_rows), np.diff(self.indptr))

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """self @ weights for a dense (n_features, k) matrix."""
        out = np.zeros((self.n_rows, weights.shape[1]), dtype=np.float64)
        filled = np.flatnonzero(np.diff(self.indptr))
        if len(filled):
            # Rows are contiguous, so each filled row is one segment of the products.
            out[filled] = np.add.reduceat(self.data[:, None] * weights[self.indices],
                                          self.indptr[filled], axis=0)
        return out


@dataclass
class Vectorizer:
    vocabulary: dict[str, int]
    idf: np.ndarray

    @classmethod
    def fit(cls, documents: Sequence[list[str]]) -> Vectorizer:
        document_frequency: Counter[str] = Counter()
        for tokens in documents:
            document_frequency.update(set(tokens))
        terms = sorted(document_frequency)
        n = len(documents)
        # Smoothed idf, as if one more document held every term: no division by zero.
        idf = np.array([math.log((1 + n) / (1 + document_frequency[t])) + 1 for t in terms])
        return cls({term: i for i, term in enumerate(terms)}, idf)

    def transform(self, documents: Sequence[list[str]]) -> Csr:
        indptr, indices, data = [0], [], []
        for tokens in documents:
            counts = Counter(t for t in tokens if t in self.vocabulary)
            row = sorted((self.vocabulary[t], (1 + math.log(c)) * GROUP_WEIGHTS[t[0]])
                         for t, c in counts.items())
            values = np.array([v for _, v in row], dtype=np.float64)
            columns = np.array([i for i, _ in row], dtype=np.int64)
            if len(values):
                values *= self.idf[columns]
                norm = float(np.linalg.norm(values))
                values /= norm or 1.0
            indices.extend(columns.tolist())
            data.extend(values.tolist())
            indptr.append(len(indices))
        return Csr(np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int64),
                   np.array(data, dtype=np.float64), len(self.vocabulary))
