"""Beauty quality runs of issue 15: run them quietly, then tabulate and plot them.

    # one run (waits for a quiet box, records the load average before and after)
    SIDREC_DATA_DIR=../shared/data python bench/beauty_quality.py run sidgpt_rqvae --logs runs/
    # every log in runs/ -> docs/results/beauty_quality.csv, docs/results/beauty_curves.csv,
    #                        docs/figures/beauty_curves.png
    python bench/beauty_quality.py report --logs runs/ [--mfu mfu.json]

`RUNS` holds each run's job command (jobs/train_recommender.py on all 22,363
Beauty users, full catalog, selection on valid NDCG@10, test read once at the
best valid epoch). SID tables: `sids/rqvae.parquet` (jobs/train_rqvae.py
--run-name rqvae) and `sids/hidvae.parquet` (jobs/train_hidvae.py --run-name
hidvae) under the artifact root. A run's log is the job's own output between
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

ARTIFACTS = (
    Path(os.environ.get("SIDREC_ARTIFACT_ROOT", Path.home() / "sidrec-artifacts")) / "beauty"
)
JOB = [sys.executable, "jobs/train_recommender.py", "--dataset", "beauty", "--no-mlflow"]
SIDS = {"rqvae": "sids/rqvae.parquet", "hidvae": "sids/hidvae.parquet"}


def _sid_run(model: str, sids: str, budget_s: int, *extra: str) -> list[str]:
    flags = ["--sids", str(ARTIFACTS / SIDS[sids]), "--epochs", "300", "--patience", "10"]
    if sids == "hidvae":
        flags.append("--hierarchy-aware")  # HiD-VAE §4.2.7 embeddings
    return [*JOB, "--model", model, *flags, "--time-budget-s", str(budget_s), *extra]


# The open TIGER recipes' shape (d 128, 4 layers, FFN 512) with their optimiser
# (AdamW wd 0.05, warm-up, cosine to 0 over the run, grad clip 1): issue 15.
# bench/mfu.py's `sidgpt_d128` trainable reads the same two tuples.
SIDGPT_D128 = ("d_model=128", "num_layers=4", "num_heads=2", "ffn_dim=512", "dropout=0.3")
COSINE_OPTIMISER = ("lr_schedule=cosine", "weight_decay=0.05", "warmup_steps=200", "grad_clip=1.0")
SIDGPT_D128_COSINE = SIDGPT_D128 + COSINE_OPTIMISER


def _d128_cosine(
    sids: str, hierarchy_aware: bool = True, epochs: int = 60, *extra: str
) -> list[str]:
    """`epochs` (60): the cosine reaches 0 at the last one, so the run has a fixed length.
    hierarchy_aware=False: HiD-VAE SIDs with plain code embeddings (SIDs vs embeddings)."""
    budget = 3000 if epochs <= 60 else 3600  # the bar's 60 minutes of training
    flags = [f"--set={kv}" for kv in SIDGPT_D128_COSINE]
    command = _sid_run("sidgpt", sids, budget, *flags, *extra)
    command[command.index("--epochs") + 1] = str(epochs)
    if epochs != 60:  # a fixed-length run: no early stop before the cosine's end
        command[command.index("--patience") + 1] = str(epochs)
    if not hierarchy_aware:
        command.remove("--hierarchy-aware")
    return command


SIDGPT_DROP03 = {
    "d_model": 64, "num_layers": 2, "num_heads": 1, "ffn_dim": 64, "dropout": 0.3, "max_len": 50,
}  # fmt: skip


# SASRec's measured cosine runs: the same without weight decay. Until 2026-12-05 its
# loop used Adam and ignored the weight_decay=0.05 they passed; it now honours it.
SASREC_COSINE = tuple(kv for kv in COSINE_OPTIMISER if not kv.startswith("weight_decay"))


def _sasrec_run(epochs: int, patience: int, *extra: str) -> list[str]:
    """SASRec-CE within the 20-minute bar's budget."""
    flags = ["--epochs", str(epochs), "--patience", str(patience), "--time-budget-s", "1200"]
    return [*JOB, "--model", "sasrec", "--loss", "ce", *flags, *extra]


# Item-id input rows with SASRec's Beauty dropout, valid every 2nd epoch.
IDS_DROP05 = ("--eval-every", "2", "--set=id_inputs=true", "--set=dropout=0.5")

# name -> (model label, SID label, job command)
RUNS = {
    "sasrec_ce": ("SASRec-CE", "ids", _sasrec_run(300, 10)),
    # SID-GPT d128's optimiser on SASRec (AdamW wd 0.05, warm-up, cosine to 0 at
    # epoch 55, clip 1), no early stop: 55 epochs at ~20 s fit the 20-minute bar.
    "sasrec_ce_cosine": (
        "SASRec-CE, cosine",
        "ids",
        _sasrec_run(55, 55, *[f"--set={kv}" for kv in SASREC_COSINE]),
    ),
    # The same with the cosine stretched to 88 epochs (9.4 s each + a 1.7 s valid
    # pass on 2026-12-04: 983 s): the 55-epoch run's loss and valid N@10 still
    # fell / rose until its lr reached 0.
    "sasrec_ce_cosine88": (
        "SASRec-CE, cosine 88",
        "ids",
        _sasrec_run(88, 88, *[f"--set={kv}" for kv in SASREC_COSINE]),
    ),
    # The 88-epoch run with AdamW's weight decay 0.05 applied (SID-GPT's): valid was
    # flat from epoch 70 to 88 without it, and N@10 is 5% under the GPU reference.
    "sasrec_ce_cosine88_wd": (
        "SASRec-CE, cosine 88, AdamW wd 0.05",
        "ids",
        _sasrec_run(88, 88, *[f"--set={kv}" for kv in COSINE_OPTIMISER]),
    ),
    "sidgpt_rqvae": ("SID-GPT", "RQ-VAE", _sid_run("sidgpt", "rqvae", 1500)),
    "sidgpt_hidvae": ("SID-GPT", "HiD-VAE", _sid_run("sidgpt", "hidvae", 1500)),
    # The body's dropout 0.5 -> 0.3 (SASRec's Beauty value regularizes 12k id rows;
    # the SID inputs share ~800 code rows): sidgpt_beauty's default since.
    "sidgpt_rqvae_drop03": (
        "SID-GPT (dropout 0.3)",
        "RQ-VAE",
        _sid_run("sidgpt", "rqvae", 1200, "--arch", json.dumps(SIDGPT_DROP03)),
    ),
    "sidgpt_rqvae_d128_cosine": ("SID-GPT d128x4, cosine", "RQ-VAE", _d128_cosine("rqvae")),
    # 90 epochs, valid every 2nd (5 s a pass, 12.7 s an epoch): the 60-epoch run's valid N@10
    # rose until its lr reached 0 (best epoch 50).
    "sidgpt_rqvae_d128_cosine90": (
        "SID-GPT d128x4, cosine 90",
        "RQ-VAE",
        _d128_cosine("rqvae", True, 90, "--eval-every", "2"),
    ),
    "sidgpt_hidvae_d128_cosine": ("SID-GPT d128x4, cosine", "HiD-VAE", _d128_cosine("hidvae")),
    # The RQ-VAE 90-epoch schedule on HiD-VAE SIDs: the 60-epoch run's best was epoch 58.
    "sidgpt_hidvae_d128_cosine90": (
        "SID-GPT d128x4, cosine 90",
        "HiD-VAE",
        _d128_cosine("hidvae", True, 90, "--eval-every", "2"),
    ),
    # The 90-epoch runs with a learned input row per item beside its code rows
    # (`id_inputs`, H2Rec's hash-ID idea on the input side; the output is still SIDs).
    "sidgpt_hidvae_d128_ids_cosine90": (
        "SID-GPT d128x4 + id inputs, cosine 90",
        "HiD-VAE",
        _d128_cosine("hidvae", True, 90, "--eval-every", "2", "--set=id_inputs=true"),
    ),
    # The same with SASRec's Beauty dropout (0.5): with id rows, valid R@10 stopped
    # rising at epoch ~21 of 90 at dropout 0.3 while the training loss kept falling.
    "sidgpt_hidvae_d128_ids_drop05_cosine90": (
        "SID-GPT d128x4 + id inputs, dropout 0.5, cosine 90",
        "HiD-VAE",
        _d128_cosine("hidvae", True, 90, *IDS_DROP05),
    ),
    # The same cosine stretched to 140 epochs (~3,200 s at 19.4 s + a 3.2 s valid share):
    # the 90-epoch run's valid N@10 still crept up to its last epoch (best 89).
    "sidgpt_hidvae_d128_ids_drop05_cosine140": (
        "SID-GPT d128x4 + id inputs, dropout 0.5, cosine 140",
        "HiD-VAE",
        _d128_cosine("hidvae", True, 140, *IDS_DROP05),
    ),
    # The 90-epoch run with each history position's id row dropped half the time in
    # training (`id_dropout`): the id rows lifted the tail and cost the head (.1123
    # against .1229 without them); the body must keep reading the codes.
    "sidgpt_hidvae_d128_ids_drop05_iddrop05_cosine90": (
        "SID-GPT d128x4 + id inputs (id dropout 0.5), dropout 0.5, cosine 90",
        "HiD-VAE",
        _d128_cosine("hidvae", True, 90, *IDS_DROP05, "--set=id_dropout=0.5"),
    ),
    # Half as much: id dropout 0.5 gave the head back (.1313) and took the tail (.0165).
    "sidgpt_hidvae_d128_ids_drop05_iddrop025_cosine90": (
        "SID-GPT d128x4 + id inputs (id dropout 0.25), dropout 0.5, cosine 90",
        "HiD-VAE",
        _d128_cosine("hidvae", True, 90, *IDS_DROP05, "--set=id_dropout=0.25"),
    ),
    # The same run with another torch seed (init, batch order, dropout): how far
    # apart two runs of one recipe land, against the .0024 still missing to the bar.
    "sidgpt_hidvae_d128_ids_drop05_iddrop025_cosine90_seed1": (
        "SID-GPT d128x4 + id inputs (id dropout 0.25), dropout 0.5, cosine 90, seed 1",
        "HiD-VAE",
        _d128_cosine("hidvae", True, 90, *IDS_DROP05, "--set=id_dropout=0.25", "--seed", "1"),
    ),
    # id dropout 0.25 with the 140-epoch cosine: its 90-epoch run's best was epoch 75 of 90.
    "sidgpt_hidvae_d128_ids_drop05_iddrop025_cosine140": (
        "SID-GPT d128x4 + id inputs (id dropout 0.25), dropout 0.5, cosine 140",
        "HiD-VAE",
        _d128_cosine("hidvae", True, 140, *IDS_DROP05, "--set=id_dropout=0.25"),
    ),
    "sidgpt_rqvae_d128_ids_drop05_cosine90": (
        "SID-GPT d128x4 + id inputs, dropout 0.5, cosine 90",
        "RQ-VAE",
        _d128_cosine("rqvae", True, 90, *IDS_DROP05),
    ),
    "sidgpt_hidvae_plain_d128_cosine": (
        "SID-GPT d128x4, cosine, plain embeddings",
        "HiD-VAE",
        _d128_cosine("hidvae", hierarchy_aware=False),
    ),
    "tiger_rqvae": (
        "TIGER (tiger_cpu)",
        "RQ-VAE",
        _sid_run("tiger", "rqvae", 300, "--preset", "tiger_cpu"),
    ),
    "tiger_hidvae": (
        "TIGER (tiger_cpu)",
        "HiD-VAE",
        _sid_run("tiger", "hidvae", 300, "--preset", "tiger_cpu"),
    ),
}
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
    model, sids, _ = RUNS[name]
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
                "mfu": _mfu(model, s_per_epoch, mfu),
                "load_before": run_log["load_before"],
                "load_after": run_log["load_after"],
                "date": run_log["date"],
                "command": run_log["command"],
            }
        )
    return [{c: r[c] for c in COLUMNS} for r in rows]


def _mfu(model: str, s_per_epoch: float, mfu: dict[str, dict]) -> float | str:
    """The bench/mfu.py row's MFU % for this run's model ("" when not measured)."""
    bench = mfu.get(D128 if model.startswith(D128) else MFU_NAMES.get(model, ""))
    if bench is None:
        return ""
    if ID_ROWS not in model:
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
    model, sids, _ = RUNS[name]
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
        mfu = {r["model"]: {**r, "peak": peak} for r in bench["rows"]}
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
