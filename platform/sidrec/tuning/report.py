"""The static report every sweep leaves: sweep_report.html (self-contained) + PNGs + trials.csv.

    trials, histories = trial_table(result_grid, space)   # one row per trial, best first
    write_report(folder, space, trials, histories, best, sweep=..., ...)

Figures (matplotlib, Agg):
- metric_vs_params.png: each trial's metric (last report) against each swept value;
- collision_vs_uniqueness.png (HiD-VAE): final collision rate against
  β_unique (`unique_weight`), one line per margin m (`unique_margin`), and
  the other way round, whenever the trials report `collision_rate`;
- learning_curves.png: the metric per epoch, the best trials in colour,
  every other trial in grey (ASHA's early stops show as short curves).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sidrec.artifacts import atomic_path, write_text_atomic

__all__ = ["trial_table", "write_report", "SUMMARY_METRICS"]

# Final values shown beside the sweep metric when the trials report them.
SUMMARY_METRICS = (
    "collision_rate",
    "max_items_per_sid",
    "recon_loss",
    "tag_acc/level_0",
    "tag_acc/level_1",
    "tag_acc/level_2",
    "best_valid/ndcg@10",
    "valid/recall@10",
)
_BEST_CURVES = 3


def trial_table(grid, space) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(one row per trial sorted best first, {trial_id: per-epoch metrics}) from a ResultGrid."""
    rows, histories = [], {}
    max_t = space.max_epochs()
    for result in grid:
        history = result.metrics_dataframe
        history = history if history is not None else pd.DataFrame()
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name.split("-")[-1]
        histories[trial_id] = history
        values = space.values({k: result.config.get(k) for k in space.params})
        row: dict[str, Any] = {"trial_id": trial_id}
        row.update({f"param/{k}": result.config.get(k) for k in space.params})
        row["epochs"] = len(history)
        # The last report, not the best epoch: a tokenizer publishes its last
        # epoch's codes, and SASRec's metric is already the best valid so far.
        row["metric"] = _last(history, space.metric)
        for name in SUMMARY_METRICS:
            if name in history.columns:
                row[name] = _last(history, name)
        for key in ("unique_weight", "unique_margin"):
            if key in values:
                row[f"value/{key}"] = values[key]
        if result.error is not None:
            row["status"] = "ERROR"
        elif len(history) < max_t:
            row["status"] = "STOPPED (ASHA)"
        else:
            row["status"] = "COMPLETED"
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table.sort_values(
        "metric", ascending=space.mode == "min", na_position="last", kind="stable"
    ).reset_index(drop=True)
    return table, histories


def _last(history: pd.DataFrame, metric: str) -> float:
    if metric not in history.columns or history[metric].dropna().empty:
        return float("nan")
    return float(history[metric].dropna().iloc[-1])


# ----------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _numeric(values: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """x positions, and tick labels when the values are not numbers."""
    try:
        return values.astype(float).to_numpy(), None
    except (TypeError, ValueError):
        labels = sorted({str(v) for v in values})
        return np.array([labels.index(str(v)) for v in values], dtype=float), labels


def plot_metric_vs_params(trials: pd.DataFrame, space, path: Path) -> Path:
    plt = _pyplot()
    names = list(space.params)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        x, labels = _numeric(trials[f"param/{name}"])
        y = trials["metric"].astype(float).to_numpy()
        ax.scatter(x, y, s=36, alpha=0.8)
        ax.scatter(x[:1], y[:1], s=120, facecolors="none", edgecolors="red", label="best")
        if labels:
            ax.set_xticks(range(len(labels)), labels, rotation=30)
        elif space.params[name].kind == "loguniform":
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(f"{space.metric}, last epoch ({space.mode})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{space.metric} vs each hyperparameter")
    return _save(fig, path)


def plot_collisions(trials: pd.DataFrame, path: Path) -> Path | None:
    """Final collision rate vs β_unique per margin m, and vs m per β_unique."""
    needed = {"collision_rate", "value/unique_weight", "value/unique_margin"}
    if not needed <= set(trials.columns) or trials["collision_rate"].dropna().empty:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    pairs = (
        ("unique_weight", "unique_margin", "β_unique"),
        ("unique_margin", "unique_weight", "m"),
    )
    for ax, (x_key, group_key, label) in zip(axes, pairs, strict=True):
        for value, group in trials.groupby(f"value/{group_key}"):
            group = group.sort_values(f"value/{x_key}")
            ax.plot(
                group[f"value/{x_key}"].astype(float),
                group["collision_rate"].astype(float),
                marker="o",
                label=f"{group_key}={value:g}",
            )
        ax.set_xlabel(f"{x_key} ({label})")
        ax.set_ylabel("collision rate (final epoch)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("HiD-VAE: collision rate vs uniqueness loss weight β_unique and margin m (Eq. 7)")
    return _save(fig, path)


def plot_learning_curves(
    trials: pd.DataFrame, histories: dict[str, pd.DataFrame], space, path: Path
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    best_ids = list(trials["trial_id"][:_BEST_CURVES])
    for trial_id, history in histories.items():
        if space.metric not in history.columns or trial_id in best_ids:
            continue
        ax.plot(_epochs(history), history[space.metric], color="0.75", lw=1)
    for rank, trial_id in enumerate(best_ids, start=1):
        history = histories.get(trial_id)
        if history is None or space.metric not in history.columns:
            continue
        row = trials[trials["trial_id"] == trial_id].iloc[0]
        params = ", ".join(f"{k}={_short(row[f'param/{k}'])}" for k in space.params)
        ax.plot(
            _epochs(history), history[space.metric], marker=".", lw=2, label=f"#{rank} {params}"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(space.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"learning curves: best {len(best_ids)} trials in colour, others grey")
    return _save(fig, path)


def _epochs(history: pd.DataFrame) -> pd.Series:
    return history["training_iteration"] if "training_iteration" in history else history.index + 1


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _save(fig, path: Path) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.tight_layout()
            fig.savefig(tmp, dpi=110)
    finally:
        _pyplot().close(fig)
    return path


# ----------------------------------------------------------------------------
# the HTML page
# ----------------------------------------------------------------------------


def write_report(
    folder: Path,
    space,
    trials: pd.DataFrame,
    histories: dict[str, pd.DataFrame],
    best: dict[str, Any],
    *,
    sweep: str,
    tracking_uri: str,
    experiment_id: str,
    tune_path: Path,
) -> Path:
    """Figures, trials.csv and sweep_report.html (images inlined) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = [
        plot_metric_vs_params(trials, space, folder / "metric_vs_params.png"),
        plot_collisions(trials, folder / "collision_vs_uniqueness.png"),
        plot_learning_curves(trials, histories, space, folder / "learning_curves.png"),
    ]
    write_text_atomic(folder / "trials.csv", trials.to_csv(index=False))
    counts = trials["status"].value_counts().to_dict()
    best_yaml = folder / "best_config.yaml"
    page = _PAGE.format(
        title=html.escape(f"Sweep {sweep}"),
        space=html.escape(str(space.path)),
        stage=html.escape(space.stage_name),
        metric=html.escape(space.metric),
        mode=space.mode,
        summary=html.escape(", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))),
        n=len(trials),
        best=html.escape(f"{best['trial_id']}: {space.metric} = {best['value']:.6g}"),
        best_yaml=html.escape(best_yaml.read_text() if best_yaml.is_file() else ""),
        table=_table_html(trials),
        figures="\n".join(_img(p) for p in figures if p is not None),
        mlflow_cmd=html.escape(f"mlflow ui --backend-store-uri {tracking_uri} --port 5000"),
        mlflow_url=html.escape(f"http://127.0.0.1:5000/#/experiments/{experiment_id}"),
        tb_cmd=html.escape(f"tensorboard --logdir {tune_path}"),
    )
    path = folder / "sweep_report.html"
    write_text_atomic(path, page)
    return path


def _table_html(trials: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in trials.columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
        for row in trials.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{path.stem}" src="data:image/png;base64,{data}"><figcaption>{path.name}</figcaption></figure>'


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
tbody tr:first-child {{ background: #e6f4ea; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; }}
</style></head><body>
<h1>{title}</h1>
<p>Space <code>{space}</code>, stage <b>{stage}</b>; metric <code>{metric}</code> ({mode}),
ASHA early stopping. {n} trials: {summary}.</p>
<h2>Best trial</h2>
<p>{best}</p>
<pre>{best_yaml}</pre>
<h2>Trials (best first)</h2>
{table}
<h2>Figures</h2>
{figures}
<h2>Dashboards</h2>
<p>MLflow (run comparison, parallel coordinates: select the runs, then "Compare"):</p>
<pre>{mlflow_cmd}
# then open {mlflow_url}</pre>
<p>TensorBoard over the Tune folder (<code>pip install tensorboard</code>):</p>
<pre>{tb_cmd}</pre>
</body></html>
"""
