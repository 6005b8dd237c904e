"""compute_map and the revisited protocols against hand-worked examples."""

import math

import numpy as np
import pytest

from dinov2.eval.revisited import compute_ap, compute_map, evaluate_revisited, protocol_gnd


def column(*indices):
    return np.array(indices, dtype=np.int64).reshape(-1, 1)


def test_positives_at_known_ranks():
    # positives 0 and 2 sit at 0-based ranks 1 and 3: trapezoids (0 + 1/2)/2 * 1/2 + (1/3 + 2/4)/2 * 1/2 = 1/3
    mean_ap, aps, pr, prs = compute_map(column(3, 0, 1, 2, 4), [{"ok": [0, 2], "junk": []}], kappas=[1, 5])
    assert mean_ap == pytest.approx(1 / 3)
    assert aps[0] == pytest.approx(1 / 3)
    # mP@1: no positive at rank 1; mP@5 is capped at the last positive's rank (4): 2 / 4
    assert pr == pytest.approx([0.0, 0.5])
    assert prs.shape == (1, 2)


def test_perfect_ranking_scores_one():
    mean_ap, _, pr, _ = compute_map(column(1, 2, 0, 3), [{"ok": [1, 2], "junk": []}], kappas=[1, 2])
    assert mean_ap == pytest.approx(1.0)
    assert pr == pytest.approx([1.0, 1.0])


def test_junk_is_removed_from_the_ranking():
    ranking = column(5, 0, 1, 2)
    with_junk, _, _, _ = compute_map(ranking, [{"ok": [1], "junk": [5, 0]}])
    without_junk, _, _, _ = compute_map(ranking, [{"ok": [1], "junk": []}])
    assert with_junk == pytest.approx(1.0)  # the positive moves from rank 2 to rank 0
    assert without_junk == pytest.approx((0 + 1 / 3) / 2)


def test_queries_without_positives_are_skipped():
    ranks = np.array([[0, 0, 1], [1, 1, 0], [2, 2, 2]])
    gnd = [{"ok": [0], "junk": []}, {"ok": [], "junk": [1]}, {"ok": [2], "junk": []}]
    mean_ap, aps, _, prs = compute_map(ranks, gnd, kappas=[1])
    assert math.isnan(aps[1]) and np.isnan(prs[1]).all()
    # query 0: AP 1; query 2: positive at rank 2 -> (2/... ) = (0 + 1/3)/2
    assert mean_ap == pytest.approx((1.0 + (0 + 1 / 3) / 2) / 2)


def test_compute_ap_rejects_no_positive():
    with pytest.raises(ValueError):
        compute_ap(np.array([]), 0)


def test_protocols_build_ok_and_junk_from_easy_hard_junk():
    gnd = [{"easy": [0], "hard": [1], "junk": [2], "bbx": [0, 0, 1, 1]}]
    easy, medium, hard = (protocol_gnd(gnd, p)[0] for p in ("easy", "medium", "hard"))
    assert sorted(easy["ok"]) == [0] and sorted(easy["junk"]) == [1, 2]
    assert sorted(medium["ok"]) == [0, 1] and sorted(medium["junk"]) == [2]
    assert sorted(hard["ok"]) == [1] and sorted(hard["junk"]) == [0, 2]
    with pytest.raises(ValueError, match="lacks"):
        protocol_gnd([{"easy": [0]}], "easy")


def test_evaluate_revisited_reports_percentages_per_protocol():
    gnd = [{"easy": [0], "hard": [1], "junk": [2]}]
    results = evaluate_revisited(column(1, 2, 0, 3), gnd)
    assert results["hard"]["mAP"] == pytest.approx(100.0)  # hard positive first
    assert results["easy"]["mAP"] == pytest.approx(100.0)  # 1 and 2 are junk under Easy
    # Medium: ok {0, 1} at ranks 0 and 1 once junk 2 is removed
    assert results["medium"]["mAP"] == pytest.approx(100.0)
    assert set(results["medium"]["mP"]) == {"1", "5", "10"}
    shuffled = evaluate_revisited(column(3, 0, 2, 1), gnd)
    assert shuffled["hard"]["mAP"] < 100.0
