"""Beauty quality runs of issue 15: run them quietly, then tabulate and plot them.

    # one run (waits for a quiet box, records the load average before and after)
    SIDREC_DATA_DIR=../shared/data python bench/beauty_quality.py run sidgpt_rqvae --logs runs/
    # every log in runs/ -> docs/results/beauty_quality.csv, docs/results/beauty_curves.csv,
    #                        docs/figures/beauty_curves.png
    python bench/beauty_quality.py report --logs runs/ [--mfu mfu.json]

`RUNS` (bench/_beauty_runs.py) holds each run's job command
(jobs/train_recommender.py on all 22,363 Beauty users, full catalog, selection
on valid NDCG@10, test read once at the best valid epoch). SID tables:
`sids/rqvae.parquet` (jobs/train_rqvae.py --run-name rqvae) and
`sids/hidvae.parquet` (jobs/train_hidvae.py --run-name hidvae) under the
artifact root. A run's log is the job's own output between
a `CMD:` / `START: ... LOAD_BEFORE:` header and an `END: ... LOAD_AFTER:`
footer; `report` reads the per-epoch lines (`epoch=`, `epoch_seconds=`,
`eval_seconds=`, `valid/ndcg@10=`) and the final `test/...` line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _beauty_runs import RUNS  # bench/ is the script's folder

# the CSV's columns: what ran, its figures, its cost, and the box's load around it
COLUMNS = (
    "model sids protocol R@5 R@10 N@5 N@10 epochs train_seconds s_per_epoch mfu "
    "load_before load_after date command"
).split()
CURVE_COLUMNS = ["run", "epoch", "wall_seconds", "valid_ndcg@10"]
# read back verbatim (a load average of "1.90" stays "1.90")
TEXT_COLUMNS = {"model", "sids", "protocol", "load_before", "load_after", "date", "command", "run"}
PROTOCOLS = {
    "plain": "",
    "exclude_seen": "exclude_seen/",
    "head (plain)": "head/",
    "tail (plain)": "tail/",
}
# report label -> bench/mfu.py row label
MFU_NAMES = {
    "SASRec-CE": "SASRec-CE",
    "SASRec-CE, cosine": "SASRec-CE",
    "SASRec-CE, cosine 88": "SASRec-CE",
    "SASRec-CE, cosine 88, AdamW wd 0.05": "SASRec-CE",
    "SASRec-CE, batch 128, cosine 80": "SASRec-CE",
    "SASRec-CE, batch 64, cosine 60": "SASRec-CE",
    "SASRec-CE, batch 64, cosine 90": "SASRec-CE",
    # the seen-item term adds gathers of the logits SASRec computes anyway, not GEMMs
    "SASRec-CE, batch 128, cosine 80, seen penalty 1": "SASRec-CE",
    "SASRec-CE, batch 128, cosine 80, seen penalty 4": "SASRec-CE",
    "H2Rec-CE, batch 128, cosine 80": "H2Rec-CE",
    "SID-GPT": "SID-GPT",
    "SID-GPT (dropout 0.3)": "SID-GPT",
    "TIGER (tiger_cpu)": "TIGER",
}
D128 = "SID-GPT d128x4"  # every run labelled so is the bench's `sidgpt_d128` trainable
# The id rows are gathers, not FLOPs: an id-row run's MFU is the bench row's counted
# FLOPs per epoch over the run's own seconds per epoch (the rows' backward and AdamW).
ID_ROWS = "+ id inputs"


def run(name: str, logs: Path) -> Path:
    """Wait (<= 5 min) for a 1-minute load below 0.3, run, log with the load around it."""
    _, _, command = RUNS[name]
    for _ in range(60):
        if os.getloadavg()[0] < 0.3:
            break
        time.sleep(5)
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{name}.log"
    with path.open("w") as out:
        out.write(f"CMD: {' '.join(command)}\n")
        out.write(f"START: {_now()} LOAD_BEFORE: {_load()}\n")
        out.flush()
        rc = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
        out.write(f"END: {_now()} LOAD_AFTER: {_load()} RC: {rc}\n")
    return path


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _metrics(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\S+?)=(-?[0-9.eE+-]+)(?=\s|$)", line)}


def parse_log(path: Path) -> dict:
    """Header, per-epoch curve and final test metrics of one run log."""
    text = path.read_text().splitlines()
    head = {"command": text[0].removeprefix("CMD: ").strip()}
    curve, test = [], {}
    for line in text:
        if line.startswith("START:"):
            head["date"] = line.split()[1][:10]
            head["load_before"] = line.split("LOAD_BEFORE:")[1].split()[0]
        elif line.startswith("END:"):
            head["load_after"] = line.split("LOAD_AFTER:")[1].split()[0]
        elif "test/recall@10=" in line:
            test = _metrics(line)
        elif " epoch=" in line and "epoch_seconds=" in line:
            # every trained epoch; with --eval-every > 1 only some carry a valid pass
            # (the others name only `best_valid/...`, the best so far)
            curve.append(_metrics(line))
    if not test or "load_after" not in head:
        raise ValueError(f"{path}: the run did not finish (no test line or no END footer)")
    return {**head, "curve": curve, "test": test}


def report_rows(name: str, run_log: dict, mfu: dict[str, dict]) -> list[dict]:
    model, sids, command = RUNS[name]
    curve, test = run_log["curve"], run_log["test"]
    epochs = len(curve)
    s_per_epoch = sum(c["epoch_seconds"] for c in curve) / max(epochs, 1)
    rows = []
    for protocol, prefix in PROTOCOLS.items():
        rows.append(
            {
                "model": model,
                "sids": sids,
                "protocol": protocol,
                **{
                    f"{m[0].upper()}@{k}": round(test[f"test/{prefix}{m}@{k}"], 4)
                    for m in ("recall", "ndcg")
                    for k in (5, 10)
                },
                "epochs": epochs,
                "train_seconds": round(test.get("elapsed_seconds", 0.0)),
                "s_per_epoch": round(s_per_epoch, 1),
                "mfu": _mfu(model, "--batch-size" in command, s_per_epoch, mfu),
                "load_before": run_log["load_before"],
                "load_after": run_log["load_after"],
                "date": run_log["date"],
                "command": run_log["command"],
            }
        )
    return [{c: r[c] for c in COLUMNS} for r in rows]


def _mfu(model: str, own_batch: bool, s_per_epoch: float, mfu: dict[str, dict]) -> float | str:
    """The bench/mfu.py row's MFU % for this run's model ("" when not measured).

    own_batch: the run sets --batch-size, so it does the bench row's FLOPs per epoch
    at another batch than the bench timed, in its own seconds."""
    bench = mfu.get(D128 if model.startswith(D128) else MFU_NAMES.get(model, ""))
    if bench is None:
        return ""
    if ID_ROWS not in model and not own_batch:
        return round(bench["mfu_percent"], 1)
    return round(100 * bench["flops_per_epoch"] / s_per_epoch / bench["peak"], 1)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _read_csv(path: Path, columns: list[str]) -> list[dict]:
    """Rows of an earlier report, numbers parsed back; [] when there is none yet.
    A file with other columns is refused (nothing is rewritten from a misread)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != columns:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {columns}")
        return [
            {k: v if k in TEXT_COLUMNS else _number(v) for k, v in row.items()} for row in reader
        ]


def _number(text: str) -> float | int | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def curve_rows(name: str, run_log: dict) -> list[dict]:
    """Valid NDCG@10 against wall seconds (training + evaluation so far)."""
    model, sids, command = RUNS[name]
    out, wall = [], 0.0
    for c in run_log["curve"]:
        wall += c["epoch_seconds"] + c.get("eval_seconds", 0.0)
        if "valid/ndcg@10" not in c:  # an epoch without a valid pass
            continue
        out.append(
            {
                "run": f"{model} / {sids}",
                "epoch": int(c["epoch"]),
                "wall_seconds": round(wall, 1),
                "valid_ndcg@10": c["valid/ndcg@10"],
            }
        )
    return out


def plot(curves: list[dict], path: Path, rows: list[dict]) -> list[str]:
    """Valid NDCG@10 against wall seconds, one panel per item vocabulary (ids,
    RQ-VAE, HiD-VAE) so each legend stays readable; rows: the runs' CSV rows, whose
    dates and load averages the title gives. Returns the panels' titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["run"] for r in curves))
    kinds = list(dict.fromkeys(n.rsplit(" / ", 1)[-1] for n in names)) or ["no runs"]
    titles = []
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 7), sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, kind in zip(axes[0], kinds, strict=True):
        in_panel = [n for n in names if n.rsplit(" / ", 1)[-1] == kind]
        for i, run_name in enumerate(in_panel):
            pts = [r for r in curves if r["run"] == run_name]
            ax.plot(
                [p["wall_seconds"] for p in pts],
                [p["valid_ndcg@10"] for p in pts],
                marker=".",
                # past 10 runs in a panel the colours repeat: dashes tell them apart
                linestyle="-" if i < len(colours) else "--",
                color=colours[i % len(colours)],
                label=run_name.rsplit(" / ", 1)[0],
            )
        titles.append(f"{kind} ({len(in_panel)} run{'' if len(in_panel) == 1 else 's'})")
        ax.set_title(titles[-1])
        ax.set_xlabel("wall seconds (training + valid pass), 2-core CPU")
        ax.grid(alpha=0.3)
        if in_panel:  # under the curves, one run a line
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small")
    axes[0][0].set_ylabel("valid NDCG@10 (full catalog)")
    fig.suptitle(f"Amazon Beauty, all 22,363 users, one 2-core box ({_when_and_load(rows)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return titles


def _when_and_load(rows: list[dict]) -> str:
    """The runs' days and 1-minute load averages before / after, for the plot's title."""
    if not rows:
        return "no runs"
    days = sorted({str(r["date"]) for r in rows})
    before, after = ([float(r[k]) for r in rows] for k in ("load_before", "load_after"))
    span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    return f"{span}; load average before each run {min(before):.2f}-{max(before):.2f}, " + (
        f"after {min(after):.2f}-{max(after):.2f}"
    )


def report(logs: Path, out: Path, mfu_json: Path | None) -> None:
    mfu = {}
    if mfu_json is not None:
        bench = json.loads(mfu_json.read_text())
        peak = bench["gemm_peak_flops_per_s"]
        # a row merged in from another bench/mfu.py run carries that run's own peak
        mfu = {r["model"]: {"peak": peak, **r} for r in bench["rows"]}
    rows, curves = [], []
    kept_rows = _read_csv(out / "docs/results/beauty_quality.csv", COLUMNS)
    kept_curves = _read_csv(out / "docs/results/beauty_curves.csv", CURVE_COLUMNS)
    for name, (model, sids, _) in RUNS.items():
        path = logs / f"{name}.log"
        if path.is_file():
            parsed = parse_log(path)
            rows += report_rows(name, parsed, mfu)
            curves += curve_rows(name, parsed)
            continue
        # No new log: the run's rows already in the CSVs stay as they are, so a
        # report over today's logs never drops an earlier day's measured rows.
        old_rows = [r for r in kept_rows if (r["model"], r["sids"]) == (model, sids)]
        print(f"{name}: no log at {path}, kept its {len(old_rows)} earlier rows", file=sys.stderr)
        rows += old_rows
        curves += [r for r in kept_curves if r["run"] == f"{model} / {sids}"]
    write_csv(out / "docs/results/beauty_quality.csv", rows, COLUMNS)
    write_csv(out / "docs/results/beauty_curves.csv", curves, CURVE_COLUMNS)
    plot(curves, out / "docs/figures/beauty_curves.png", rows)
    print("| model | SIDs | protocol | R@10 | N@10 | epochs | s/epoch | load before/after |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['sids']} | {r['protocol']} | {r['R@10']:.4f} | "
            f"{r['N@10']:.4f} | {r['epochs']} | {r['s_per_epoch']} | "
            f"{r['load_before']} / {r['load_after']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("name", choices=sorted(RUNS))
    p_run.add_argument("--logs", type=Path, required=True)
    p_rep = sub.add_parser("report")
    p_rep.add_argument("--logs", type=Path, required=True)
    p_rep.add_argument("--out", type=Path, default=Path("."), help="repository root")
    p_rep.add_argument("--mfu", type=Path, default=None, help="bench/mfu.py --json output")
    args = parser.parse_args()
    if args.cmd == "run":
        print(run(args.name, args.logs))
    else:
        report(args.logs, args.out, args.mfu)


if __name__ == "__main__":
    main()
