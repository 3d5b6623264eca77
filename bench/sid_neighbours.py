"""How often a user's consecutive training items share SID prefixes, per SID table.

    PYTHONPATH=platform python bench/sid_neighbours.py --artifact-root ~/sidrec-artifacts/beauty \\
        --sids rqvae hidvae

A next-item generator predicts the next item's codes level by level: the more
often consecutive items share the first code, the more that code carries about
what a user buys next (docs/RESULTS_recommender.md, HiD-VAE vs RQ-VAE SIDs).
Reads the training sequences (valid and test items held out) and
sids/<name>.parquet; prints one row per table. Seconds on Beauty.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sidrec.data import train_sequences


def consecutive_pairs(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): each training item and the one the same user took next."""
    seq = train_sequences(root)
    same_user = np.ones(len(seq.items) - 1, bool)
    ends = seq.offsets[1:-1] - 1  # last item of each user but the final one
    same_user[ends[ends >= 0]] = False
    return seq.items[:-1][same_user], seq.items[1:][same_user]


def prefix_share(codes: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[float]:
    """Share of pairs whose first 1..L codes are equal."""
    equal = codes[a] == codes[b]  # [pairs x L]
    return [float(np.all(equal[:, : n + 1], axis=1).mean()) for n in range(codes.shape[1])]


def read_codes(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no SID table (jobs/train_rqvae.py, train_hidvae.py write it)"
        )
    table = pq.read_table(path, columns=["item_id", "codes"])
    codes = np.stack(table.column("codes").to_numpy(zero_copy_only=False))
    out = np.empty_like(codes)
    out[table.column("item_id").to_numpy()] = codes
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact-root", type=Path, required=True)
    parser.add_argument(
        "--sids", nargs="+", default=["rqvae", "hidvae"], help="sids/<name>.parquet"
    )
    args = parser.parse_args()
    root = args.artifact_root.expanduser()
    a, b = consecutive_pairs(root)
    print(f"{len(a):,} consecutive training pairs in {root}")
    print("| SID table | share of pairs with the same first 1, 2, ... codes |")
    print("|---|---|")
    for name in args.sids:
        shares = prefix_share(read_codes(root / "sids" / f"{name}.parquet"), a, b)
        print(f"| {name} | {' / '.join(f'{s:.4f}' for s in shares)} |")


if __name__ == "__main__":
    main()
