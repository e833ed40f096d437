"""A logistic regression over profiles' features, fitted by Newton's method with an L2 penalty.

Categories become one column per frequent level (plus "another level" and "missing"); numbers
become a signed log, a "missing" flag and a step at each decile, so a number whose effect is
not a straight line on a log scale (time on site: nothing, then a lot) is still learned. On the
X Education leads (research/ml-data.md) this reaches the AUC of gradient-boosted trees with a
model small enough to explain one profile column by column.

Everything here is a pure function of its inputs: the same rows give the same model.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from leadloop.scoring.predictive.features import Value

Kind = Literal["category", "number"]
ColumnKind = Literal["is", "other", "missing", "log", "at_least"]
Matrix = npt.NDArray[np.float64]

MIN_LEVEL_COUNT = 10
"""A category level needs this many training profiles to get its own column; rarer ones share
the "another level" column, so one odd value cannot carry a weight of its own."""
MAX_LEVELS = 50
MAX_COLUMNS = 320
"""The training matrix's width (it has a row per profile, up to 200,000, and is copied once
per Newton step): with many category features, each keeps fewer levels so the whole fits."""
_FIXED_COLUMNS: dict[Kind, int] = {"category": 2, "number": 11}
"""Columns a feature takes besides its levels: "another level" and "missing"; a number's log,
its nine decile steps and "missing"."""
L2 = 3.0
"""Penalty on the weights (not the intercept): keeps rare columns from extreme weights; the
X Education AUC moves by under 0.001 between 1 and 10."""
MAX_ITERATIONS = 50


class Column(msgspec.Struct, frozen=True, array_like=True):
    feature: int
    kind: ColumnKind
    level: str | float | None = None


class Report(msgspec.Struct, frozen=True):
    """Out-of-fold figures: each profile is scored by a model that did not see it."""

    profiles: int
    conversions: int
    folds: int
    auc: float
    brier: float
    rules_auc: float
    """The rules' score ranked the same profiles this well."""
    base_rate: float
    newest_auc: float | None = None
    """A model trained on the profiles that arrived first, scoring the newest `NEWEST` share:
    whether what was learned from the past holds for the leads arriving now. None when that
    share holds no conversion or nothing else."""


class Fitted(msgspec.Struct, frozen=True):
    columns: tuple[Column, ...]
    weights: tuple[float, ...]
    """One per column, then the intercept."""
    means: tuple[float, ...]
    """Each column's mean over the training profiles: a contribution is measured against the
    average profile, so "no pricing visits" reads as a minus, not as nothing."""


def columns_for(kinds: Sequence[Kind], rows: Sequence[Sequence[Value]]) -> tuple[Column, ...]:
    out: list[Column] = []
    categories = sum(1 for kind in kinds if kind == "category")
    spare = MAX_COLUMNS - sum(_FIXED_COLUMNS[kind] for kind in kinds)
    levels = min(MAX_LEVELS, max(0, spare) // categories) if categories else 0
    for index, kind in enumerate(kinds):
        values = [row[index] for row in rows]
        if kind == "category":
            counts = Counter(v for v in values if isinstance(v, str))
            kept = sorted(
                (level for level, n in counts.items() if n >= MIN_LEVEL_COUNT),
                key=lambda level: (-counts[level], level),
            )[:levels]
            out.extend(Column(index, "is", level) for level in sorted(kept))
            out.append(Column(index, "other"))
        else:
            present = sorted(v for v in values if isinstance(v, float) and math.isfinite(v))
            out.append(Column(index, "log"))
            steps = {present[len(present) * k // 10] for k in range(1, 10)} if present else set()
            steps.discard(present[0] if present else 0.0)  # a step at the minimum is constant
            out.extend(Column(index, "at_least", step) for step in sorted(steps))
        out.append(Column(index, "missing"))
    return tuple(out)


def design(columns: Sequence[Column], rows: Sequence[Sequence[Value]]) -> Matrix:
    """One row per profile, one column per `columns`, then a column of ones (the intercept)."""
    matrix = np.zeros((len(rows), len(columns) + 1))
    matrix[:, -1] = 1.0
    by_feature: dict[int, list[tuple[int, Column]]] = {}
    for position, column in enumerate(columns):
        by_feature.setdefault(column.feature, []).append((position, column))
    for feature, owned in by_feature.items():
        # A number that is not finite is missing: one infinity would make the fit fail.
        values = [
            None if isinstance(v, float) and not math.isfinite(v) else v
            for v in (row[feature] for row in rows)
        ]
        missing = np.array([v is None for v in values])
        numbers = np.array([v if isinstance(v, float) else math.nan for v in values])
        known = {c.level for _, c in owned if c.kind == "is"}
        for position, column in owned:
            if column.kind == "missing":
                matrix[:, position] = missing
            elif column.kind == "is":
                matrix[:, position] = [v == column.level for v in values]
            elif column.kind == "other":
                matrix[:, position] = [isinstance(v, str) and v not in known for v in values]
            elif column.kind == "log":
                logged = np.sign(numbers) * np.log1p(np.abs(numbers))
                matrix[:, position] = np.nan_to_num(logged, nan=0.0)
            else:  # at_least
                assert isinstance(column.level, float)
                with np.errstate(invalid="ignore"):
                    matrix[:, position] = numbers >= column.level
    return matrix


def fit(matrix: Matrix, labels: npt.NDArray[np.float64], l2: float = L2) -> Matrix:
    """Weights minimising the penalised log loss (Newton's method; the loss is convex, so it
    converges to the one minimum from zero)."""
    width = matrix.shape[1]
    penalty = np.full(width, l2)
    penalty[-1] = 0.0
    weights = np.zeros(width)
    for _ in range(MAX_ITERATIONS):
        p = _sigmoid(matrix @ weights)
        gradient = matrix.T @ (p - labels) + penalty * weights
        hessian = (matrix * (p * (1 - p))[:, None]).T @ matrix + np.diag(penalty)
        step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        weights = weights - step
        if float(np.abs(step).max()) < 1e-8:
            break
    return weights


def _sigmoid(x: Matrix) -> Matrix:
    result: Matrix = 1.0 / (1.0 + np.exp(-np.clip(x, -35.0, 35.0)))
    return result


def train(kinds: Sequence[Kind], rows: Sequence[Sequence[Value]], labels: Sequence[bool]) -> Fitted:
    columns = columns_for(kinds, rows)
    matrix = design(columns, rows)
    weights = fit(matrix, np.array(labels, dtype=float))
    return Fitted(
        columns=columns,
        weights=tuple(float(w) for w in weights),
        means=tuple(float(m) for m in matrix[:, :-1].mean(axis=0)),
    )


def probabilities(model: Fitted, rows: Sequence[Sequence[Value]]) -> Matrix:
    return _sigmoid(design(model.columns, rows) @ np.array(model.weights))


def contributions(model: Fitted, row: Sequence[Value]) -> dict[int, float]:
    """Per feature, how far its columns move this profile's log-odds from the average one's."""
    x = design(model.columns, [row])[0]
    out: dict[int, float] = {}
    for position, column in enumerate(model.columns):
        moved = model.weights[position] * (x[position] - model.means[position])
        out[column.feature] = out.get(column.feature, 0.0) + float(moved)
    return out


def cross_validate(
    kinds: Sequence[Kind],
    keys: Sequence[str],
    rows: Sequence[Sequence[Value]],
    labels: Sequence[bool],
    rules: Sequence[float],
    folds: int = 5,
) -> Report:
    """Out-of-fold AUC and Brier score. Folds are stratified by label and drawn by a digest of
    each profile's key, so the same profiles give the same report on every machine."""
    y = np.array(labels, dtype=float)
    positives = int(y.sum())
    folds = max(2, min(folds, positives, len(y) - positives))
    order = sorted(
        range(len(keys)),
        key=lambda i: (labels[i], hashlib.sha256(keys[i].encode()).digest()),
    )
    fold_of = np.empty(len(keys), dtype=int)
    for position, index in enumerate(order):
        fold_of[index] = position % folds
    predicted = np.zeros(len(keys))
    for fold in range(folds):
        held = [int(i) for i in np.flatnonzero(fold_of == fold)]
        kept = [int(i) for i in np.flatnonzero(fold_of != fold)]
        model = train(kinds, [rows[i] for i in kept], [labels[i] for i in kept])
        predicted[held] = probabilities(model, [rows[i] for i in held])
    return Report(
        profiles=len(keys),
        conversions=positives,
        folds=folds,
        auc=round(auc(predicted, y), 4),
        brier=round(float(((predicted - y) ** 2).mean()), 4),
        rules_auc=round(auc(np.array(rules, dtype=float), y), 4),
        base_rate=round(positives / len(keys), 4),
    )


SUSPECT_AUC = 0.9
"""A single feature ranking leads this well on its own is more often written after the outcome
(a sales rep's tag, a deal's quality) than known before it: X Education's `Tags` alone reaches
0.92, while its best honest trait, time on site, reaches 0.76."""


def suspects(
    kinds: Sequence[Kind],
    keys: Sequence[str],
    rows: Sequence[Sequence[Value]],
    labels: Sequence[bool],
) -> tuple[tuple[int, float], ...]:
    """Features that alone predict the outcome suspiciously well, with their out-of-fold AUC."""
    found: list[tuple[int, float]] = []
    for index, kind in enumerate(kinds):
        alone = cross_validate(
            [kind], keys, [(row[index],) for row in rows], labels, [0.0] * len(keys)
        )
        if alone.auc >= SUSPECT_AUC:
            found.append((index, alone.auc))
    return tuple(found)


NEWEST = 0.2


def forward_auc(
    kinds: Sequence[Kind],
    order: Sequence[int],
    rows: Sequence[Sequence[Value]],
    labels: Sequence[bool],
) -> float | None:
    """AUC on the newest `NEWEST` of the profiles (by `order`) of a model trained on the rest."""
    ranked = sorted(range(len(rows)), key=lambda i: order[i])
    cut = len(ranked) - max(1, int(len(ranked) * NEWEST))
    older, newest = ranked[:cut], ranked[cut:]
    old_labels = {labels[i] for i in older}
    new_labels = np.array([labels[i] for i in newest], dtype=float)
    if len(old_labels) < 2 or new_labels.min() == new_labels.max():
        return None
    model = train(kinds, [rows[i] for i in older], [labels[i] for i in older])
    return round(auc(probabilities(model, [rows[i] for i in newest]), new_labels), 4)


def auc(scores: Matrix, labels: Matrix) -> float:
    """Probability that a random converted profile outranks a random other one (ties count
    half): the Mann-Whitney statistic on average ranks."""
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    positive = labels == 1
    n1 = int(positive.sum())
    n0 = len(labels) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))
