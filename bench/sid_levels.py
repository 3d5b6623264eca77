"""Where does a SID-GPT bundle lose the next item? Per SID level, on the valid split.

    PYTHONPATH=platform python bench/sid_levels.py --artifact-root ~/sidrec-artifacts/beauty \\
        --bundle ~/sidrec-artifacts/beauty/recommender/<run>/bundle

A generative model ranks items by log p(item) = sum_l log p(c_l | history, c_<l):
it finds the item only if every level's code is likely. For each level this
prints, teacher-forced on the true prefix of each valid user's target:
- the mean NLL of the target's code (overall, head items, tail items) beside
  the entropy of that level's codes over the catalog (what a model that
  knows only which codes are common would pay, about);
- how often the target's code is the model's first choice, and in its top 5;
- how many distinct SID prefixes end at that level (the items a right prefix
  still leaves to tell apart: catalog size / prefixes).
Then, from the trie beam search (beam 20) as evaluation runs it: how many of
each user's top 10 are items the user has already seen, and how many valid
targets (and training targets) are items their user had already seen. Where
the data never repeats an item, every seen item in the top 10 is a wasted
slot: the gap between the plain and the `exclude_seen` protocols. Reads the valid split only (the test split is never
read here): a diagnosis, like an epoch, is made on valid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from beam_width import load_for_valid  # bench/ is the script's folder

from sidrec.decoding import constrained_beam_search
from sidrec.eval.metrics import history_mask
from sidrec.models._data import length_buckets, split_rows
from sidrec.models.sidgpt import SidGPT

BEAM = 20


def level_table(bundle: Path, root: Path, max_users: int | None = None) -> dict:
    """{"levels": one dict per level, "seen": the top-10's seen items, "users": n}."""
    rec, data = load_for_valid(bundle, root, max_users)
    if not isinstance(rec.model, SidGPT):
        raise ValueError(f"{bundle}: a {rec.kind} bundle; the per-level table reads SID-GPT's")
    net = rec.model.eval()
    rows = split_rows(data.valid, net.cfg.max_len)
    sums = _Sums(net.cfg.num_levels)
    with torch.no_grad():
        for idx in length_buckets(rows.lengths, 512):
            length = int(rows.lengths[idx[0]])
            history = torch.as_tensor(rows.history[idx, -length:])
            targets = torch.as_tensor(rows.targets[idx])
            sums.add_levels(net, history, targets, data.head_mask[targets])
            top = constrained_beam_search(
                net, len(idx), rec.trie, beam_width=BEAM, topk=BEAM, state=net.encode(history)
            ).items[:, :10]
            seen = history_mask([data.valid.history(i) for i in idx], rec.num_items)
            sums.add_seen(top, targets, seen)
    catalog = net.codes_of(torch.arange(net.cfg.num_items))  # [N x L]: every item's SID
    table = sums.table(_code_entropy(catalog), _prefixes(catalog))
    table["seen"]["train_targets_seen_before"] = _train_repeats(data.sequences, max_users)
    return table


class _Sums:
    def __init__(self, levels: int):
        self.nll = np.zeros((3, levels))  # all, head, tail
        self.count = np.zeros(3)
        self.top1 = np.zeros(levels)
        self.top5 = np.zeros(levels)
        self.seen_slots = self.users_with_seen = self.seen_targets = 0

    def add_levels(self, net: SidGPT, history, targets, head) -> None:
        h = net.hidden(history)[:, -1]
        codes = net.codes_of(targets)
        for level, logits in enumerate(net.code_logits(h, targets)):
            logp = logits.float().log_softmax(-1)
            target = logp.gather(1, codes[:, level : level + 1])
            nll = -target[:, 0]
            better = (logp > target).sum(1)  # codes the model ranks above the target's
            self.top1[level] += int((better < 1).sum())
            self.top5[level] += int((better < 5).sum())
            for row, mask in enumerate((torch.ones_like(head), head, ~head)):
                self.nll[row, level] += float(nll[mask].sum())
        self.count += [len(targets), int(head.sum()), int((~head).sum())]

    def add_seen(self, top, targets, seen) -> None:
        """top: [b x 10] items (-1: none); targets: [b]; seen: [b x N] history mask."""
        slots = (seen.gather(1, top.clamp(min=0)) & (top >= 0)).sum(1)
        self.seen_slots += int(slots.sum())
        self.users_with_seen += int((slots > 0).sum())
        self.seen_targets += int(seen[torch.arange(len(targets)), targets].sum())

    def table(self, entropy: list[float], prefixes: list[int]) -> dict:
        n = self.count[0]
        nll = self.nll / np.maximum(self.count, 1)[:, None]
        levels = [
            {
                "level": level,
                "nll": nll[0, level],
                "nll_head": nll[1, level],
                "nll_tail": nll[2, level],
                "code_entropy": entropy[level],
                "prefixes": prefixes[level],
                "top1": self.top1[level] / n,
                "top5": self.top5[level] / n,
            }
            for level in range(len(entropy))
        ]
        seen = {
            "seen_per_top10": self.seen_slots / n,
            "users_with_a_seen_item": self.users_with_seen / n,
            "targets_seen_before": self.seen_targets / n,
        }
        return {"levels": levels, "seen": seen, "users": int(n)}


def _code_entropy(codes: torch.Tensor) -> list[float]:
    """Each level's code entropy over the catalog's SIDs codes [N x L] (nats)."""
    out = []
    for column in codes.T:
        p = torch.bincount(column).float()
        p = p[p > 0] / p.sum()
        out.append(float(-(p * p.log()).sum()))
    return out


def _prefixes(codes: torch.Tensor) -> list[int]:
    """Distinct SID prefixes c_0..c_l among the catalog's SIDs codes [N x L], for each level l."""
    return [len(torch.unique(codes[:, : level + 1], dim=0)) for level in range(codes.shape[1])]


def _train_repeats(sequences, max_users: int | None) -> float:
    """Share of training targets (every item after a user's first) already in that
    user's earlier items."""
    users = sequences.num_users if max_users is None else min(max_users, sequences.num_users)
    repeats = targets = 0
    for user in range(users):
        items = sequences.items[sequences.offsets[user] : sequences.offsets[user + 1]]
        repeats += len(items) - len(np.unique(items))
        targets += max(len(items) - 1, 0)
    return repeats / max(targets, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-root", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--max-users", type=int, default=None)
    args = parser.parse_args()
    result = level_table(args.bundle, args.artifact_root, args.max_users)
    print(f"valid users: {result['users']}")
    print("| level | NLL | head NLL | tail NLL | code entropy | top-1 | top-5 | prefixes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in result["levels"]:
        print(
            f"| {row['level']} | {row['nll']:.3f} | {row['nll_head']:.3f} | "
            f"{row['nll_tail']:.3f} | {row['code_entropy']:.3f} | {row['top1']:.3f} | "
            f"{row['top5']:.3f} | {row['prefixes']} |"
        )
    seen = result["seen"]
    print(
        f"beam {BEAM}: {seen['seen_per_top10']:.2f} seen items per top 10; "
        f"{seen['users_with_a_seen_item']:.1%} of users have one; "
        f"{seen['targets_seen_before']:.2%} of valid targets and "
        f"{seen['train_targets_seen_before']:.2%} of training targets were seen before"
    )


if __name__ == "__main__":
    main()
