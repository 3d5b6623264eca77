"""The LLM chooser, HiD-VAE Eq. 4: pick the candidate the LM finds most likely.

    t_l = argmax_{c in C_l(x)} log p_LM(c | prompt(x, t_<l, C_l(x)))

    scorer = build_scorer(hf_lm("/models/qwen2.5-1.5b-instruct"))
    logps = scorer.score(["Item: ...\\nAnswer:"], [["Makeup", "Skin Care"]])   # [[-3.1, -7.4]]

log p(c | prompt) is the sum, over c's tokens (then the end-of-sequence token,
where the tokenizer has one), of each token's log-probability given the
prompt and the tokens before it. Length handling: the default ranks by that
total, which favours shorter candidates only as far as the model does; the
closing EOS keeps a candidate that is a prefix of another ("Nail" vs "Nail
Polish") from winning just by stopping early. `per_token=True` ranks by the
mean per token instead (length-normalized, as some classification prompts
prefer); the manifest records which.

The prompt and the candidate are tokenized apart and concatenated, so the
candidate's tokens are exactly those scored (no BPE merge across the seam).

Backends: `hf` (transformers AutoModelForCausalLM, batched, CPU or one GPU per
actor) and `vllm` (prompt log-probs from a vLLM engine, prefix caching shares
the prompt across candidates; GPU only, `pip install -e '.[gpu]'`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "LM_BACKENDS",
    "HFScorer",
    "LMConfig",
    "LMBackend",
    "Scorer",
    "VLLMScorer",
    "build_scorer",
    "get_lm_backend",
    "hf_lm",
    "render_prompt",
    "vllm_lm",
]


@dataclass(frozen=True)
class LMConfig:
    # Registry key in LM_BACKENDS: hf (transformers, CPU or GPU) | vllm (GPU clusters).
    backend: str = "hf"
    # Local folder or hub id of a causal LM; required (there is no sensible default LLM).
    model: str = ""
    # bfloat16 on GPUs; float32 on CPU, where bf16 matmuls are slow on most cores.
    dtype: str = "float32"
    # (prompt, candidate) pairs per forward pass: k candidates x items. 32 keeps a
    # 1B model's activations small on CPU; raise it on a GPU.
    batch_size: int = 32
    # Item text kept in the prompt, in characters: a cheap bound on the prompt's
    # tokens (cost is linear in them, and a title + brand rarely needs more).
    max_text_chars: int = 1000
    # False: rank by the candidate's total log-prob (module docstring); True: by its mean.
    per_token: bool = False
    # "cpu" or "cuda"; set to "cuda" by the pipeline when actors get a GPU.
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("the LM is required: pass --lm PATH (a local folder or hub id)")
        if self.batch_size < 1 or self.max_text_chars < 1:
            raise ValueError("batch_size and max_text_chars must be >= 1")

    def identity(self) -> dict:
        """What changes the chosen tags (not batch size or device)."""
        return {
            "backend": self.backend,
            "dtype": self.dtype,
            "max_text_chars": self.max_text_chars,
            "per_token": self.per_token,
        }


class Scorer(Protocol):
    def score(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """prompts: n strings; candidates[i]: c_i strings -> n arrays [c_i] float64 log-likelihoods."""
        ...


def render_prompt(text: str, chosen: Sequence[str], level: int, candidates: Sequence[str]) -> str:
    """The classification prompt of Eq. 4: item text, the tags chosen above, the options."""
    lines = [f"Item: {text}"]
    if chosen:
        lines.append(f"Category so far: {' > '.join(chosen)}")
    lines.append(f"Options for level {level + 1}: {'; '.join(candidates)}")
    lines.append("The best option is:")
    return "\n".join(lines)


def _pair_ids(tokenizer, prompt: str, candidate: str) -> tuple[list[int], int]:
    """Token ids of prompt + " " + candidate (+ EOS), and the index where the candidate starts."""
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    cand = list(tokenizer(" " + candidate, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        cand.append(tokenizer.eos_token_id)
    return ids + cand, len(ids)


def _reduce(logps: np.ndarray, per_token: bool) -> float:
    return float(logps.mean() if per_token else logps.sum())


class HFScorer:
    """A transformers causal LM; pairs sorted by length and scored `batch_size` at a time."""

    def __init__(self, cfg: LMConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        self.model = AutoModelForCausalLM.from_pretrained(
            cfg.model, dtype=getattr(torch, cfg.dtype)
        )
        self.model.to(cfg.device).eval()
        # Right padding: real tokens keep positions 0..len-1, so a padded row scores
        # as it would alone (causal attention never looks right).
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0

    def token_logprobs(self, sequences: Sequence[list[int]]) -> list[np.ndarray]:
        """Per sequence [len-1] float64: log p(ids[t] | ids[:t]) for t = 1..len-1."""
        import torch

        out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.cfg.batch_size):
                rows = order[start : start + self.cfg.batch_size]
                width = max(len(sequences[i]) for i in rows)
                ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    ids[r, : len(sequences[i])] = torch.tensor(sequences[i])
                    mask[r, : len(sequences[i])] = 1
                ids, mask = ids.to(self.cfg.device), mask.to(self.cfg.device)
                logits = self.model(input_ids=ids, attention_mask=mask).logits  # [b x s x V]
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # predicts ids[:, 1:]
                picked = logp.gather(-1, ids[:, 1:, None])[..., 0].double().cpu().numpy()
                for r, i in enumerate(rows):
                    out[i] = picked[r, : len(sequences[i]) - 1]
        return out

    def score(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        pairs, starts, owners = [], [], []
        for i, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
            for cand in cands:
                ids, start = _pair_ids(self.tokenizer, prompt, cand)
                pairs.append(ids)
                starts.append(start)
                owners.append(i)
        token_logps = self.token_logprobs(pairs)
        # Token t of the pair is predicted at shifted position t-1.
        flat = [
            _reduce(lp[s - 1 :], self.cfg.per_token)
            for lp, s in zip(token_logps, starts, strict=True)
        ]
        return _regroup(flat, owners, [len(c) for c in candidates])


class VLLMScorer:
    """Prompt log-probs from a vLLM engine (one per GPU actor), the same pairs as HFScorer."""

    def __init__(self, cfg: LMConfig):
        _require_vllm()
        from vllm import LLM, SamplingParams

        self.cfg = cfg
        # Every candidate repeats its item's prompt: prefix caching computes it once.
        self.llm = LLM(model=cfg.model, dtype=cfg.dtype, enable_prefix_caching=True)
        self.tokenizer = self.llm.get_tokenizer()
        # One generated token (discarded); prompt_logprobs=0 returns each prompt token's own log-prob.
        self.params = SamplingParams(max_tokens=1, prompt_logprobs=0)

    def score(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        pairs, starts, owners = [], [], []
        for i, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
            for cand in cands:
                ids, start = _pair_ids(self.tokenizer, prompt, cand)
                pairs.append(ids)
                starts.append(start)
                owners.append(i)
        outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in pairs], self.params, use_tqdm=False
        )
        flat = []
        for out, ids, start in zip(outputs, pairs, starts, strict=True):
            lps = np.array([out.prompt_logprobs[t][ids[t]].logprob for t in range(start, len(ids))])
            flat.append(_reduce(lps, self.cfg.per_token))
        return _regroup(flat, owners, [len(c) for c in candidates])


def _regroup(flat: list[float], owners: list[int], sizes: list[int]) -> list[np.ndarray]:
    out = [np.zeros(n, dtype=np.float64) for n in sizes]
    seen = [0] * len(sizes)
    for value, owner in zip(flat, owners, strict=True):
        out[owner][seen[owner]] = value
        seen[owner] += 1
    return out


def _require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "--backend vllm needs the `vllm` package, which is not installed: on a GPU cluster "
            "`pip install -e '.[gpu]'` (CUDA wheels only); on CPU use --backend hf"
        )


@dataclass(frozen=True)
class LMBackend:
    # Builder of this backend's LMConfig, for jobs.
    config: Callable[..., LMConfig]
    # Builds the in-process scorer an actor holds.
    build: Callable[[LMConfig], Scorer]
    # A module that must be importable, checked before any Ray work starts.
    requires_module: str | None = None
    # True where the backend cannot run without GPUs (vLLM has no CPU wheel).
    requires_gpu: bool = False


def hf_lm(
    model: str, dtype: str = "float32", batch_size: int = 32, per_token: bool = False
) -> LMConfig:
    """A transformers causal LM on CPU or one GPU per actor."""
    return LMConfig(
        backend="hf",
        model=model,
        dtype=dtype,
        batch_size=batch_size,
        max_text_chars=1000,
        per_token=per_token,
    )


def vllm_lm(
    model: str, dtype: str = "bfloat16", batch_size: int = 512, per_token: bool = False
) -> LMConfig:
    """A vLLM engine per GPU actor (bf16; batch_size = pairs handed to the engine at once)."""
    return LMConfig(
        backend="vllm",
        model=model,
        dtype=dtype,
        batch_size=batch_size,
        max_text_chars=1000,
        per_token=per_token,
        device="cuda",
    )


LM_BACKENDS: dict[str, LMBackend] = {
    "hf": LMBackend(config=hf_lm, build=HFScorer),
    "vllm": LMBackend(config=vllm_lm, build=VLLMScorer, requires_module="vllm", requires_gpu=True),
}


def get_lm_backend(name: str) -> LMBackend:
    try:
        return LM_BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown LM backend {name!r}; choose one of {sorted(LM_BACKENDS)}"
        ) from None


def build_scorer(cfg: LMConfig) -> Scorer:
    return get_lm_backend(cfg.backend).build(cfg)
