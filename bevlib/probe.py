"""Linear probes of frozen features: how much of a class a representation already separates.

busch2026's transfer question (does reprojection pretraining teach the BEV encoder the map
classes?) is asked of the frozen latent BEV: a multinomial logistic regression
(scikit-learn's ``LogisticRegression``) is fitted on per-cell features of training keyframes and
scored on validation cells, per class, by IoU of its arg-max and by one-vs-rest ranking AUC
(``sklearn.metrics.roc_auc_score``), which does not depend on a decision threshold or on class
frequencies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ProbeResult:
    """Per-class scores of a linear probe on held-out samples.

    ``iou`` and ``auc``: (K,) float64 in [0, 1], NaN for a class absent from the held-out labels
    (AUC) or from both labels and predictions (IoU); ``n_train`` / ``n_test`` samples used.
    """

    iou: np.ndarray
    auc: np.ndarray
    n_train: int
    n_test: int


def subsample(features: np.ndarray, labels: np.ndarray, max_n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_n`` rows, drawn without replacement with a seeded generator, stratified so
    every class keeps ``min(count, max_n // K)`` rows first (rare classes are not lost)."""
    n = len(labels)
    if n <= max_n:
        return features, labels
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = max(1, max_n // len(classes))
    keep = [rng.choice(np.flatnonzero(labels == c), min(per, int((labels == c).sum())), replace=False)
            for c in classes]
    idx = np.concatenate(keep)
    rest = np.setdiff1d(np.arange(n), idx)
    if len(idx) < max_n:
        idx = np.concatenate([idx, rng.choice(rest, max_n - len(idx), replace=False)])
    idx.sort()
    return features[idx], labels[idx]


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, max_train: int = 50_000, seed: int = 0, C: float = 1.0) -> ProbeResult:
    """Fit a multinomial logistic regression on frozen features and score it per class.

    Args:
        train_x, test_x: (N, D) float features (standardised with the training mean / std).
        train_y, test_y: (N,) int labels in [0, num_classes) (filter ignored samples first).
        max_train: stratified subsample of the training rows (:func:`subsample`), for speed.
    Returns: :class:`ProbeResult` with per-class IoU (arg-max) and one-vs-rest AUC.
    Raises: ValueError when the training labels hold fewer than two classes.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train_x, train_y = subsample(np.asarray(train_x, np.float64), np.asarray(train_y), max_train, seed)
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(f"linear_probe needs >= 2 classes in the training labels, got {classes.tolist()}")
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-8
    clf = LogisticRegression(C=C, max_iter=500)
    clf.fit((train_x - mu) / sd, train_y)
    tx = (np.asarray(test_x, np.float64) - mu) / sd
    proba = np.zeros((len(tx), num_classes))
    proba[:, clf.classes_] = clf.predict_proba(tx)
    pred = proba.argmax(1)
    test_y = np.asarray(test_y)
    iou, auc = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    for c in range(num_classes):
        t, p = test_y == c, pred == c
        union = (t | p).sum()
        if union:
            iou[c] = (t & p).sum() / union
        if 0 < t.sum() < len(t):
            auc[c] = roc_auc_score(t, proba[:, c])
    return ProbeResult(iou, auc, len(train_y), len(test_y))
