"""How well latent actions agree with true actions: confusion matrix, best one-to-one mapping, NMI.

A LAM names its actions arbitrarily (code 2 may mean "up"), so agreement is scored after the best
one-to-one mapping of codes to true actions (Hungarian algorithm on the confusion matrix), and by
normalised mutual information, which needs no mapping. True actions only *measure* the LAM: nothing here
feeds training or checkpoint selection.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_pred: int, num_true: int) -> np.ndarray:
    """int64 [num_pred, num_true]: counts of (pred, true) pairs; pred and true are int arrays, same length."""
    pred, true = np.asarray(pred, dtype=np.int64).ravel(), np.asarray(true, dtype=np.int64).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"pred and true differ in length: {pred.shape[0]} vs {true.shape[0]}")
    counts = np.zeros((num_pred, num_true), dtype=np.int64)
    np.add.at(counts, (pred, true), 1)
    return counts


def best_mapping_accuracy(confusion: np.ndarray) -> tuple[float, dict[int, int]]:
    """Accuracy of the best one-to-one mapping pred -> true, and that mapping (NaN, {} when empty).

    With fewer codes than true labels, the unmatched labels count as errors; with more, unmatched codes do.
    """
    total = confusion.sum()
    if total == 0:
        return float("nan"), {}
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return float(confusion[rows, cols].sum() / total), {
        int(r): int(c) for r, c in zip(rows, cols, strict=True)
    }


def normalized_mutual_info(confusion: np.ndarray) -> float:
    """MI(pred; true) / mean(H(pred), H(true)) in [0, 1] (sklearn's default normalisation); NaN when empty.

    1 when either labelling determines the other, 0 when independent or when exactly one is constant.
    """
    total = confusion.sum()
    if total == 0:
        return float("nan")
    joint = confusion / total
    p_pred, p_true = confusion.sum(axis=1) / total, confusion.sum(axis=0) / total  # exact 1 for a constant
    h_pred = -np.sum(p_pred[p_pred > 0] * np.log(p_pred[p_pred > 0]))
    h_true = -np.sum(p_true[p_true > 0] * np.log(p_true[p_true > 0]))
    if h_pred == 0 and h_true == 0:
        return 1.0  # both constant: one labelling predicts the other exactly
    if h_pred == 0 or h_true == 0:
        return 0.0  # one constant: it says nothing about the other
    nz = joint > 0
    mi = np.sum(joint[nz] * np.log(joint[nz] / np.outer(p_pred, p_true)[nz]))
    return float(max(0.0, mi) / (0.5 * (h_pred + h_true)))


def majority_share(true: np.ndarray) -> float:
    """Share of the most common true label: what a LAM that ignores the frames scores by mapping (chance)."""
    true = np.asarray(true, dtype=np.int64).ravel()
    return float(np.bincount(true).max() / true.size) if true.size else float("nan")


def agreement(pred: np.ndarray, true: np.ndarray, num_pred: int, num_true: int) -> dict:
    """Confusion matrix, best-mapping accuracy and mapping, NMI and the majority share (chance), as a dict."""
    confusion = confusion_matrix(pred, true, num_pred, num_true)
    accuracy, mapping = best_mapping_accuracy(confusion)
    return {
        "confusion": confusion,
        "accuracy": accuracy,
        "mapping": mapping,
        "nmi": normalized_mutual_info(confusion),
        "majority": majority_share(true),
    }


def held_out_split(groups: np.ndarray) -> np.ndarray | None:
    """bool per item: True for the first half of the groups (episodes, sorted), the fitting half of a held-out
    measure; None with fewer than two groups."""
    names = np.unique(groups)
    return np.isin(groups, names[: len(names) // 2]) if len(names) >= 2 else None


def many_to_one_accuracy(
    pred: np.ndarray, true: np.ndarray, groups: np.ndarray, num_pred: int, num_true: int
) -> float:
    """Agreement when several codes may mean one label (an overcomplete codebook mapped onto fewer keys):
    each code takes its most common label on the first half of the groups (a code unseen there, the most
    common label overall) and is scored on the rest. Held out, so more codes cannot buy agreement by
    fitting the scored transitions. NaN with fewer than two groups (then nothing is held out)."""
    pred, true = np.asarray(pred, dtype=np.int64), np.asarray(true, dtype=np.int64)
    fit = held_out_split(groups)  # with two groups or more, both halves hold at least one
    if fit is None:
        return float("nan")
    confusion = confusion_matrix(pred[fit], true[fit], num_pred, num_true)
    fallback = int(confusion.sum(0).argmax())
    label = np.where(confusion.sum(1) > 0, confusion.argmax(1), fallback)
    return float((label[pred[~fit]] == true[~fit]).mean())


def linear_probe_accuracy(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, num_classes: int, l2: float = 1e-3
) -> float:
    """How much of the labels a linear map of the features recovers, on held-out groups: a multinomial
    logistic regression fitted on the transitions of the first half of the groups (episodes, sorted) and
    scored on the rest. It separates "the latent does not hold the action" (low) from "it holds it, but
    the codes split it wrongly" (high probe, low code accuracy). NaN with fewer than two groups."""
    fit = held_out_split(groups)
    if fit is None or len(labels) == 0:
        return float("nan")
    x = torch.as_tensor(features, dtype=torch.float64)
    x = (x - x[fit].mean(0)) / x[fit].std(0).clamp_min(1e-8)
    y = torch.as_tensor(labels, dtype=torch.long)
    w = torch.zeros(x.shape[1] + 1, num_classes, dtype=torch.float64, requires_grad=True)
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xb[fit] @ w, y[fit]) + l2 * w[:-1].square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xb[~fit] @ w).argmax(1) == y[~fit]).double().mean())
