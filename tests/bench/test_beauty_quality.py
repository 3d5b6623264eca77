"""bench/beauty_quality.py report: logs -> CSV rows, and a report over today's logs
keeps the rows of runs whose logs are not there (an earlier day's measured rows)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bq(load_bench):
    return load_bench("beauty_quality")


def _test_line(r10: float) -> str:
    parts = ["elapsed_seconds=120.5"]
    for prefix in ("", "exclude_seen/", "head/", "tail/"):
        for metric in ("recall", "ndcg"):
            for k in (5, 10):
                parts.append(f"test/{prefix}{metric}@{k}={r10 / (2 if k == 5 else 1):.4f}")
    return "2026-12-04 13:00:00,000 INFO sidrec.distributed.train: epoch=1 " + " ".join(parts)


def _epoch_line(epoch: int, ndcg: float | None) -> str:
    """One epoch's line; ndcg None: an epoch without a valid pass (--eval-every 2),
    which names only the best valid figure so far."""
    head = f"2026-12-04 12:0{epoch}:00,000 INFO sidrec.distributed.train: epoch={epoch} "
    if ndcg is None:
        return head + "loss=5.1 epoch_seconds=10.0 best_epoch=0 best_valid/ndcg@10=0.01"
    return head + (
        f"loss=5.1 epoch_seconds=10.0 eval_seconds=2.0 valid/ndcg@10={ndcg} "
        f"valid/recall@10={2 * ndcg}"
    )


def _log(r10: float, finished: bool = True, valid=(0.01, 0.02)) -> str:
    lines = [
        "CMD: python jobs/train_recommender.py --model sidgpt",
        "START: 2026-12-04T12:00:00Z LOAD_BEFORE: 0.12 0.30 0.40",
    ]
    lines += [_epoch_line(epoch, ndcg) for epoch, ndcg in enumerate(valid)]
    if finished:
        lines += [_test_line(r10), "END: 2026-12-04T12:40:00Z LOAD_AFTER: 1.90 1.50 1.00 RC: 0"]
    return "\n".join(lines) + "\n"


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_log_becomes_one_row_per_protocol_with_its_load_and_curve(bq, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "sidgpt_rqvae.log").write_text(_log(0.0612))
    bq.report(logs, tmp_path, None)
    rows = _rows(tmp_path / "docs/results/beauty_quality.csv")
    assert [r["protocol"] for r in rows] == list(bq.PROTOCOLS)
    plain = rows[0]
    assert (plain["model"], plain["sids"], plain["R@10"], plain["N@5"]) == (
        "SID-GPT", "RQ-VAE", "0.0612", "0.0306",
    )  # fmt: skip
    assert (plain["epochs"], plain["s_per_epoch"], plain["train_seconds"]) == ("2", "10.0", "120")
    assert (plain["load_before"], plain["load_after"], plain["date"]) == (
        "0.12",
        "1.90",
        "2026-12-04",
    )
    curve = _rows(tmp_path / "docs/results/beauty_curves.csv")
    assert [(c["wall_seconds"], c["valid_ndcg@10"]) for c in curve] == [
        ("12.0", "0.01"), ("24.0", "0.02"),
    ]  # fmt: skip
    assert (tmp_path / "docs/figures/beauty_curves.png").stat().st_size > 0


def test_epochs_without_a_valid_pass_count_as_epochs_and_wall_time_but_not_curve_points(
    bq, tmp_path
):
    (tmp_path / "sidgpt_rqvae.log").write_text(_log(0.06, valid=(None, 0.01, None, 0.02)))
    bq.report(tmp_path, tmp_path, None)
    plain = _rows(tmp_path / "docs/results/beauty_quality.csv")[0]
    assert (plain["epochs"], plain["s_per_epoch"]) == ("4", "10.0")
    curve = _rows(tmp_path / "docs/results/beauty_curves.csv")
    assert [(c["epoch"], c["wall_seconds"], c["valid_ndcg@10"]) for c in curve] == [
        ("1", "22.0", "0.01"), ("3", "44.0", "0.02"),
    ]  # fmt: skip


def test_a_report_keeps_the_rows_of_runs_without_a_log_and_replaces_the_others(bq, tmp_path):
    first, second = tmp_path / "day1", tmp_path / "day2"
    first.mkdir()
    second.mkdir()
    (first / "sidgpt_rqvae.log").write_text(_log(0.0500))
    (first / "sidgpt_hidvae.log").write_text(_log(0.0400))
    bq.report(first, tmp_path, None)
    # day 2: only the RQ-VAE run again, with a new figure
    (second / "sidgpt_rqvae.log").write_text(_log(0.0600))
    bq.report(second, tmp_path, None)
    rows = _rows(tmp_path / "docs/results/beauty_quality.csv")
    plain = {r["sids"]: r["R@10"] for r in rows if r["protocol"] == "plain"}
    assert plain == {"RQ-VAE": "0.06", "HiD-VAE": "0.04"}
    assert len(rows) == 2 * len(bq.PROTOCOLS)
    # the kept row reads back verbatim, its load average text included
    kept = next(r for r in rows if r["sids"] == "HiD-VAE")
    assert (kept["load_before"], kept["load_after"]) == ("0.12", "1.90")
    runs = {c["run"] for c in _rows(tmp_path / "docs/results/beauty_curves.csv")}
    assert runs == {"SID-GPT / RQ-VAE", "SID-GPT / HiD-VAE"}


def test_an_unfinished_log_is_refused_naming_the_file(bq, tmp_path):
    (tmp_path / "sidgpt_rqvae.log").write_text(_log(0.05, finished=False))
    with pytest.raises(ValueError, match="sidgpt_rqvae.log.*did not finish"):
        bq.report(tmp_path, tmp_path, None)


def test_an_earlier_csv_with_other_columns_is_refused_and_left_as_it_was(bq, tmp_path):
    old = tmp_path / "docs/results/beauty_quality.csv"
    old.parent.mkdir(parents=True)
    old.write_text("model,R@10\nSID-GPT,0.05\n")
    (tmp_path / "sidgpt_rqvae.log").write_text(_log(0.06))
    with pytest.raises(ValueError, match="beauty_quality.csv: columns"):
        bq.report(tmp_path, tmp_path, None)
    assert old.read_text() == "model,R@10\nSID-GPT,0.05\n"


def test_mfu_is_the_bench_row_s_or_its_flops_over_the_run_s_own_seconds(bq, tmp_path):
    """A run of the bench's model takes its MFU; an id-row run (the same counted FLOPs,
    more seconds: gathers) or a run at another batch (the same FLOPs in other seconds)
    divides those FLOPs by its own seconds per epoch."""
    import json

    (tmp_path / "sidgpt_rqvae_d128_cosine90.log").write_text(_log(0.07))
    (tmp_path / "sidgpt_hidvae_d128_ids_cosine90.log").write_text(_log(0.06))
    (tmp_path / "sasrec_ce_cosine88.log").write_text(_log(0.08))
    (tmp_path / "sasrec_ce_batch128_cosine80.log").write_text(_log(0.08))
    bench = {
        "gemm_peak_flops_per_s": 200e9,
        "rows": [
            {"model": "SID-GPT d128x4", "mfu_percent": 34.44, "flops_per_epoch": 1000e9},
            {"model": "SASRec-CE", "mfu_percent": 24.44, "flops_per_epoch": 500e9},
        ],
    }
    (tmp_path / "mfu.json").write_text(json.dumps(bench))
    bq.report(tmp_path, tmp_path, tmp_path / "mfu.json")
    rows = _rows(tmp_path / "docs/results/beauty_quality.csv")
    mfu = {r["model"]: r["mfu"] for r in rows if r["protocol"] == "plain"}
    assert mfu["SID-GPT d128x4, cosine 90"] == "34.4"
    assert mfu["SID-GPT d128x4 + id inputs, cosine 90"] == "50.0"  # 1000 / 10 s / 200
    assert mfu["SASRec-CE, cosine 88"] == "24.4"
    assert mfu["SASRec-CE, batch 128, cosine 80"] == "25.0"  # 500 / 10 s / 200


def test_the_plot_has_one_panel_per_item_vocabulary_and_draws_with_no_runs(bq, tmp_path):
    curves = [
        {"run": run, "epoch": 1, "wall_seconds": 10.0, "valid_ndcg@10": 0.02}
        for run in ("SASRec-CE / ids", "SID-GPT / RQ-VAE", "SID-GPT, cosine / RQ-VAE")
    ]
    path = tmp_path / "curves.png"
    rows = [{"date": "2026-12-04", "load_before": "0.12", "load_after": "1.90"}]
    assert bq.plot(curves, path, rows) == ["ids (1 run)", "RQ-VAE (2 runs)"]
    assert path.stat().st_size > 0
    assert bq.plot([], path, []) == ["no runs (0 runs)"]
    assert not list(tmp_path.glob("*.tmp.png"))  # written to a temp name, then renamed
    two_days = rows + [{"date": "2026-12-05", "load_before": "0.30", "load_after": "2.05"}]
    assert bq._when_and_load(two_days) == (
        "2026-12-04 to 2026-12-05; load average before each run 0.12-0.30, after 1.90-2.05"
    )
