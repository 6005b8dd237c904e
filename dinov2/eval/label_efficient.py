"""Label-efficient protocols on cached features (last block's class token, L2-normalised).

- **Few-shot**: for each number of labelled images per class (1, 10, 100 by default) and each of ``draws`` seeded
  draws of that many training images per class, weighted k-NN (the DINO vote; all of the draw when it has k images
  or fewer) and logistic regression score the whole val split; each is reported as the mean over draws with a
  95 % t interval of the mean and every draw's value. The regularisation of a few-shot regression is chosen by
  stratified cross-validation inside the draw (at most 5 folds), so no label beyond the draw is used; a 1-shot
  draw cannot be split and keeps ``C = 1``.
- **Logistic regression on all the training labels**: ``C`` chosen on a held-out part of the training images
  (stratified, ``holdout_fraction``), then the regression refitted on all of them and scored on val.

The regressions are scikit-learn's ``LogisticRegression`` (L-BFGS, multinomial, L2 penalty).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split

from dinov2.eval.knn_classifier import knn_accuracies
from utils.statistics import t_interval

DEFAULT_SHOTS = (1, 10, 100)
DEFAULT_DRAWS = 5
# inverse L2 strengths searched: unit-norm features need weak penalties (the quick start's picked 100 and 1,000)
DEFAULT_CS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
ONE_SHOT_C = 1.0  # a 1-shot draw has no second image per class to validate on: scikit-learn's default
MAX_FOLDS = 5
MAX_ITER = 1000


def few_shot_indices(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` indices per class, drawn without replacement by ``seed`` (sorted); ``ValueError`` naming the class
    that has fewer images."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < shots:
            raise ValueError(f"class {int(label)} has {len(members)} training image(s), fewer than {shots} shots")
        chosen.append(rng.choice(members, size=shots, replace=False))
    return np.sort(np.concatenate(chosen))


def unit_features(features: torch.Tensor) -> np.ndarray:
    """``[N, D]`` features L2-normalised, as float64 for scikit-learn."""
    return F.normalize(features.float(), dim=1).numpy().astype(np.float64)


def fit_logistic(train_x: np.ndarray, train_y: np.ndarray, c: float) -> LogisticRegression:
    """An L2-regularised multinomial logistic regression fitted on ``(train_x, train_y)`` at ``c``."""
    model = LogisticRegression(C=c, max_iter=MAX_ITER)
    with warnings.catch_warnings():  # a separable few-shot draw may stop at max_iter: its score is still defined
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(train_x, train_y)


def top1_of(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 (%) of ``model`` on ``(x, y)``."""
    return 100.0 * float((model.predict(x) == y).mean())


def logistic_top1(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, c: float) -> float:
    """Top-1 (%) on val of an L2-regularised multinomial logistic regression fitted on train at ``c``."""
    return top1_of(fit_logistic(train_x, train_y, c), val_x, val_y)


def best_c(scores: dict[float, float]) -> float:
    """The ``C`` of the best score; ties go to the smallest (the strongest regularisation)."""
    return max(scores, key=lambda c: (scores[c], -c))


def choose_c_by_folds(x: np.ndarray, y: np.ndarray, cs: Sequence[float], seed: int) -> float:
    """The ``c`` of best mean accuracy over stratified folds of ``(x, y)`` (ties: the smallest, the strongest
    regularisation); :data:`ONE_SHOT_C` when a class has a single image."""
    folds = min(MAX_FOLDS, int(np.bincount(y).min()))
    if folds < 2:
        return ONE_SHOT_C
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return best_c({c: np.mean([logistic_top1(x[fit], y[fit], x[held], y[held], c)
                               for fit, held in splitter.split(x, y)]) for c in cs})


def few_shot_scores(train: torch.Tensor, train_labels: torch.Tensor, val: torch.Tensor, val_labels: torch.Tensor,
                    num_classes: int, shots: Sequence[int] = DEFAULT_SHOTS, draws: int = DEFAULT_DRAWS,
                    k: int = 20, temperature: float = 0.07, cs: Sequence[float] = DEFAULT_CS, seed: int = 0) -> dict:
    """``{shots: {"knn": interval, "logreg": interval, "C": [per draw]}}``, each interval a :func:`t_interval` of the
    draws' top-1 (%) with ``values`` (every draw's); ``train`` / ``val`` are ``[N, D]`` features."""
    train_x, val_x = unit_features(train), unit_features(val)
    train_y, val_y = train_labels.numpy(), val_labels.numpy()
    out = {}
    for n_shots in shots:
        knn, logreg, chosen = [], [], []
        for draw in range(draws):
            draw_seed = seed * 1000 + draw
            idx = few_shot_indices(train_y, n_shots, draw_seed)
            knn.append(knn_accuracies(train[idx], train_labels[idx], val, val_labels, [k], temperature,
                                      num_classes)[str(k)]["top1"])  # k beyond the draw: all of it votes
            chosen.append(choose_c_by_folds(train_x[idx], train_y[idx], cs, draw_seed))
            logreg.append(logistic_top1(train_x[idx], train_y[idx], val_x, val_y, chosen[-1]))
        out[str(n_shots)] = {"knn": {**t_interval(knn), "values": knn}, "logreg": {**t_interval(logreg),
                                                                                    "values": logreg}, "C": chosen}
    return out


def fit_on_all_labels(train: torch.Tensor, train_labels: torch.Tensor, cs: Sequence[float] = DEFAULT_CS,
                      holdout_fraction: float = 0.1, seed: int = 0) -> tuple[LogisticRegression, float, dict]:
    """Logistic regression on every training label: ``C`` chosen on a stratified held-out part of train, refitted
    on all of train; ``(model, C, {C: held-out top-1})`` (the model takes :func:`unit_features`)."""
    x, y = unit_features(train), train_labels.numpy()
    fit, held = train_test_split(np.arange(len(y)), test_size=holdout_fraction, stratify=y, random_state=seed)
    holdout = {c: logistic_top1(x[fit], y[fit], x[held], y[held], c) for c in cs}
    best = best_c(holdout)
    return fit_logistic(x, y, best), best, holdout


def logistic_regression_all(train: torch.Tensor, train_labels: torch.Tensor, val: torch.Tensor,
                            val_labels: torch.Tensor, cs: Sequence[float] = DEFAULT_CS, holdout_fraction: float = 0.1,
                            seed: int = 0) -> dict:
    """:func:`fit_on_all_labels` scored on val: ``{"top1", "C", "holdout_top1": {C: top1}}``."""
    model, best, holdout = fit_on_all_labels(train, train_labels, cs, holdout_fraction, seed)
    return {"top1": top1_of(model, unit_features(val), val_labels.numpy()), "C": best,
            "holdout_top1": {str(c): value for c, value in holdout.items()}}
