"""``spark_jobs.compare``: which candidate is chosen offline and which one a retrain's canary tests."""

from __future__ import annotations

from typing import Any

from spark_jobs import compare


def result(recall: float, unlisted: float | None, cpu: float = 1.0) -> dict[str, Any]:
    return {
        "overall": {"recall_at_20": recall, "ndcg_at_20": recall / 2, "unlisted_recall_at_20": unlisted},
        "training": {"before_t": {"cpu_seconds": cpu}},
    }


def test_the_canary_challenger_is_the_best_on_watches_no_shown_list_started() -> None:
    # popularity wins Recall@20 (what the shown lists earned it), ALS wins where exposure earns nothing
    results = {
        "popularity": result(0.084, 0.0139, cpu=9),
        "group_popularity": result(0.084, 0.0140, cpu=12),
        "als_r16_demo": result(0.073, 0.0154, cpu=21),
        "als_r64": result(0.064, 0.0138, cpu=122),
    }
    chosen, _ = compare.choose(results)
    assert chosen == "popularity"  # the tie on Recall@20 goes to the cheaper
    name, why = compare.challenger(results, chosen)
    assert name == "als_r16_demo"
    assert "0.0154" in why and "0.0139" in why and "popularity" in why


def test_the_chosen_candidate_is_its_own_challenger_when_it_also_leads_without_exposure() -> None:
    results = {"popularity": result(0.08, 0.02, cpu=1), "als_r16": result(0.07, 0.02, cpu=0.5)}
    assert compare.challenger(results, "popularity")[0] == "popularity"  # a tie keeps the chosen one
    results["als_r16"]["overall"]["unlisted_recall_at_20"] = None  # no unlisted test watch measured
    assert compare.challenger(results, "popularity")[0] == "popularity"


def test_the_report_names_the_challenger_beside_the_choice() -> None:
    results = {"popularity": result(0.08, 0.01), "als_r16": result(0.07, 0.02)}
    report = compare.build_report(
        "20261202T042217Z", {}, results, "popularity", "popularity is served", {},
        compare.challenger(results, "popularity"),
    )  # fmt: skip
    assert (report["chosen"], report["challenger"]) == ("popularity", "als_r16")
    assert report["challenger_argument"].startswith("als_r16 has the best Recall@20 on test watches")
