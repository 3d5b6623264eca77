"""Where does a SID-GPT bundle lose the next item? Per SID level, on the valid split.

    PYTHONPATH=platform python bench/sid_levels.py --artifact-root ~/sidrec-artifacts/beauty \\
        --bundle ~/sidrec-artifacts/beauty/recommender/<run>/bundle

A generative model ranks items by log p(item) = sum_l log p(c_l | history, c_<l):
it finds the item only if every level's code is likely. For each level this
prints, teacher-forced on the true prefix of each valid user's target:
- the mean NLL of the target's code (overall, head items, tail items) beside
  the entropy of that level's codes over the catalog (what a model that
  knows only which codes are common would pay, about);
- how often the target's code is the model's first choice, and in its top 5.
Then, from the trie beam search (beam 20) as evaluation runs it: how many of
each user's top 10 are items the user has already seen, and how many valid
targets are seen items. Where the data never repeats an item, every seen
item in the top 10 is a wasted slot: the gap between the plain and the
`exclude_seen` protocols. Reads the valid split only (the test split is never
read here): a diagnosis, like an epoch, is made on valid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from sidrec.decoding import constrained_beam_search
from sidrec.models._data import length_buckets, split_rows
from sidrec.models.bundle import load_bundle
from sidrec.models.sidgpt import SidGPT
from sidrec.models.train._common import load_data
from sidrec.models.train.config import TrainConfig

BEAM = 20


def level_table(bundle: Path, root: Path, max_users: int | None = None) -> dict:
    """{"levels": one dict per level, "seen": the top-10's seen items, "users": n}."""
    rec = load_bundle(bundle)
    if not isinstance(rec.model, SidGPT):
        raise ValueError(f"{bundle}: a {rec.kind} bundle; the per-level table reads SID-GPT's")
    data = load_data(TrainConfig(root=str(root), max_users=max_users))
    if data.num_items != rec.num_items:
        raise ValueError(
            f"{bundle}: {rec.num_items} items, the catalog under {root} has {data.num_items}"
        )
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
            seen = [set(data.valid.history(i).tolist()) for i in idx]
            sums.add_seen(top.tolist(), targets.tolist(), seen)
    return sums.table(_code_entropy(net))


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

    def add_seen(self, top: list, targets: list, seen: list[set]) -> None:
        for items, target, history in zip(top, targets, seen, strict=True):
            slots = sum(item in history for item in items)
            self.seen_slots += slots
            self.users_with_seen += slots > 0
            self.seen_targets += target in history

    def table(self, entropy: list[float]) -> dict:
        n = self.count[0]
        nll = self.nll / np.maximum(self.count, 1)[:, None]
        levels = [
            {
                "level": level,
                "nll": nll[0, level],
                "nll_head": nll[1, level],
                "nll_tail": nll[2, level],
                "code_entropy": entropy[level],
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


def _code_entropy(net: SidGPT) -> list[float]:
    """Each level's code entropy over the catalog (nats)."""
    out = []
    for column in net.codes_of(torch.arange(net.cfg.num_items)).T:
        p = torch.bincount(column).float()
        p = p[p > 0] / p.sum()
        out.append(float(-(p * p.log()).sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-root", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--max-users", type=int, default=None)
    args = parser.parse_args()
    result = level_table(args.bundle, args.artifact_root, args.max_users)
    print(f"valid users: {result['users']}")
    print("| level | NLL | head NLL | tail NLL | code entropy | top-1 | top-5 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in result["levels"]:
        print(
            f"| {row['level']} | {row['nll']:.3f} | {row['nll_head']:.3f} | "
            f"{row['nll_tail']:.3f} | {row['code_entropy']:.3f} | {row['top1']:.3f} | "
            f"{row['top5']:.3f} |"
        )
    seen = result["seen"]
    print(
        f"beam {BEAM}: {seen['seen_per_top10']:.2f} seen items per top 10; "
        f"{seen['users_with_a_seen_item']:.1%} of users have one; "
        f"{seen['targets_seen_before']:.2%} of valid targets were seen before"
    )


if __name__ == "__main__":
    main()
