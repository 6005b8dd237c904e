"""Revisited Oxford/Paris metrics (Radenovic et al., 2018) with the revisitop toolkit's conventions.

``ranks`` holds database indices in ranked order, one column per query (shape ``(n_db, n_q)``). ``gnd`` holds
one dict per query with ``ok`` (positives) and ``junk`` (ignored) index arrays. Average precision is the
trapezoidal area under the precision-recall curve after junk images are removed from the ranking; mP@k caps k
at the rank of the query's last positive, as the toolkit does.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

PROTOCOLS = ("easy", "medium", "hard")
DEFAULT_KAPPAS = (1, 5, 10)


def compute_ap(positive_ranks: np.ndarray, num_positives: int) -> float:
    """Average precision from the 0-based ranks (junk removed, ascending) of the retrieved positives."""
    if num_positives <= 0:
        raise ValueError("compute_ap: a query needs at least one positive")
    recall_step = 1.0 / num_positives
    ap = 0.0
    for found, rank in enumerate(np.asarray(positive_ranks, dtype=np.int64)):
        # precision just before and just after this positive; their mean integrates a linear segment
        precision_before = 1.0 if rank == 0 else found / rank
        precision_after = (found + 1) / (rank + 1)
        ap += (precision_before + precision_after) * recall_step / 2.0
    return ap


def _positions_without_junk(ranking: np.ndarray, positives: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """Ranks of ``positives`` in ``ranking`` once every junk image is taken out of the list."""
    positive_positions = np.flatnonzero(np.isin(ranking, positives))
    junk_positions = np.flatnonzero(np.isin(ranking, junk))
    junk_before = np.searchsorted(junk_positions, positive_positions, side="left")
    return positive_positions - junk_before


def compute_map(
    ranks: np.ndarray, gnd: Sequence[dict[str, Any]], kappas: Sequence[int] = ()
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Mean average precision and mean precision at ``kappas`` over queries that have positives.

    Returns ``(mAP, aps, pr, prs)``: aps ``[n_q]`` and prs ``[n_q, len(kappas)]`` are NaN for queries without
    positives, which are skipped in the means (the revisitop convention).
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or ranks.shape[1] != len(gnd):
        raise ValueError(f"compute_map: ranks must have shape (n_db, n_q={len(gnd)}), got {ranks.shape}")
    kappas = list(kappas)
    num_queries = len(gnd)
    aps = np.full(num_queries, np.nan)
    prs = np.full((num_queries, len(kappas)), np.nan)
    for query, entry in enumerate(gnd):
        positives = np.asarray(entry.get("ok", []), dtype=np.int64)
        if positives.size == 0:
            continue
        junk = np.asarray(entry.get("junk", []), dtype=np.int64)
        positions = _positions_without_junk(ranks[:, query], positives, junk)
        aps[query] = compute_ap(positions, positives.size)
        ranks_1based = positions + 1
        last = int(ranks_1based.max()) if ranks_1based.size else 0
        for j, kappa in enumerate(kappas):
            cutoff = min(last, kappa)
            prs[query, j] = (ranks_1based <= cutoff).sum() / cutoff if cutoff > 0 else 0.0
    evaluated = ~np.isnan(aps)
    if not evaluated.any():
        return float("nan"), aps, np.full(len(kappas), np.nan), prs
    return float(aps[evaluated].mean()), aps, prs[evaluated].mean(axis=0), prs


def protocol_gnd(gnd: Sequence[dict[str, Any]], protocol: str) -> list[dict[str, np.ndarray]]:
    """Per-query ``ok``/``junk`` arrays of one protocol from the dataset's ``easy``/``hard``/``junk`` lists.

    easy: ok = easy, junk = junk + hard; medium: ok = easy + hard, junk = junk; hard: ok = hard, junk = junk + easy.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected one of {PROTOCOLS}")
    out = []
    for index, entry in enumerate(gnd):
        missing = [key for key in ("easy", "hard", "junk") if key not in entry]
        if missing:
            raise ValueError(f"gnd[{index}] lacks the key(s) {missing}")
        easy, hard, junk = (np.asarray(entry[key], dtype=np.int64) for key in ("easy", "hard", "junk"))
        if protocol == "easy":
            out.append({"ok": easy, "junk": np.concatenate([junk, hard])})
        elif protocol == "medium":
            out.append({"ok": np.concatenate([easy, hard]), "junk": junk})
        else:
            out.append({"ok": hard, "junk": np.concatenate([junk, easy])})
    return out


def evaluate_revisited(
    ranks: np.ndarray, gnd: Sequence[dict[str, Any]], kappas: Sequence[int] = DEFAULT_KAPPAS
) -> dict[str, dict[str, Any]]:
    """mAP and mP@k (in %, as the papers print them) for Easy, Medium and Hard."""
    results = {}
    for protocol in PROTOCOLS:
        mean_ap, aps, pr, _ = compute_map(ranks, protocol_gnd(gnd, protocol), kappas)
        results[protocol] = {
            "mAP": round(100.0 * mean_ap, 4),
            "mP": {str(k): round(100.0 * float(p), 4) for k, p in zip(kappas, pr)},
            "num_queries_evaluated": int((~np.isnan(aps)).sum()),
        }
    return results
