"""Multinomial logistic regression (softmax) trained by full-batch gradient descent in numpy.

A thousand short examples and a few tens of thousands of sparse features: gradient steps with
Nesterov momentum reach the same optimum as scikit-learn's LogisticRegression (C=10, balanced)
in 150 steps, 2–3 s on this machine, and the result is two arrays. Weak regularisation keeps
the probabilities usable as a confidence (a strongly regularised model ranks as well but
spreads its probability thinly over all 16 topics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handlers.topics.features import Csr


@dataclass
class SoftmaxModel:
    weights: np.ndarray  # (n_features, n_classes)
    bias: np.ndarray  # (n_classes,)

    def probabilities(self, x: Csr) -> np.ndarray:
        return softmax(x.dot(self.weights) + self.bias)


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def train(x: Csr, labels: np.ndarray, n_classes: int, *, l2: float = 1e-4,
          steps: int = 150, rate: float = 10.0, momentum: float = 0.9) -> SoftmaxModel:
    """Minimise the mean cross-entropy plus l2/2·|W|²; classes are weighted equally whatever
    the number of their examples, so a topic with few phrases is not drowned."""
    n = x.n_rows
    target = np.zeros((n, n_classes))
    target[np.arange(n), labels] = 1.0
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    sample_weight = (n / (n_classes * np.maximum(counts, 1.0)))[labels][:, None] / n
    rows = x.rows()
    # The transposed gradient X.T @ G gathers by feature: sort the stored values by column
    # once, then each step is one reduceat instead of a slow scatter-add.
    order = np.argsort(x.indices, kind="stable")
    columns = x.indices[order]
    starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
    touched = columns[starts]
    weights = np.zeros((x.n_features, n_classes))
    bias = np.zeros(n_classes)
    velocity_w, velocity_b = np.zeros_like(weights), np.zeros_like(bias)
    for _ in range(steps):
        look_w = weights + momentum * velocity_w
        look_b = bias + momentum * velocity_b
        gradient = (softmax(x.dot(look_w) + look_b) - target) * sample_weight
        grad_w = l2 * look_w
        if len(order):
            grad_w[touched] += np.add.reduceat(
                x.data[order][:, None] * gradient[rows[order]], starts, axis=0)
        velocity_w = momentum * velocity_w - rate * grad_w
        velocity_b = momentum * velocity_b - rate * gradient.sum(axis=0)
        weights += velocity_w
        bias += velocity_b
    return SoftmaxModel(weights, bias)
