"""Train one ladder run (one width, one seed) and save its log-spaced checkpoints as HF model directories."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from emergence.ladder import data, plan
from emergence.ladder.embedding import factor_digit_embeddings, plain_copy
from emergence.ladder.model import training_flops
from emergence.ladder.tokenizer import build_tokenizer, encode_text
from emergence.machine import machine
from emergence.models import modeldir

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exploded; the message names the step and the settings to change."""


@dataclass(frozen=True)
class TrainSettings:
    """Every knob of a ladder run; defaults are the recipe probed on this kind of machine."""

    width: int
    family: str = "ladder"
    seed: int = 0
    train_tokens: int = 3_000_000
    batch_rows: int = 64  # rows per step
    n_ctx: int = 128
    lr: float = 3e-3  # this run's peak (the plan scales the family's `lr` with width: plan.peak_lr)
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 0.1  # cosine decay to 10% of the peak
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    checkpoints: int = 3
    first_checkpoint_fraction: float = 1 / 16
    operations: tuple[tuple[str, float], ...] = tuple((op, 1.0) for op in data.OPERATIONS)  # (name, weight)
    document: str = "arithmetic"  # or "modified_arithmetic": BIG-bench's formats (see `data`)
    plus_one_share: float = 0.5  # modified_arithmetic: the documents whose results carry the hidden +1
    examples_per_row: int = 64  # at most; rows hold as many documents as fit, as k-shot prompts do
    example_format: tuple[tuple[str, float], ...] = (("plain", 1.0),)  # (format, per-document share); see data
    heldout_rows: int = 64
    threads: int = 1
    device: str = "cpu"  # or "cuda": bf16 autocast (the GPU preset)
    loss_explosion: float = 20.0  # a loss above this (ln(99) ~ 4.6 is chance) counts as diverged

    @classmethod
    def from_config(cls, settings: dict, **overrides) -> TrainSettings:
        """From the plain dict a rule passes (mappings and lists become the frozen tuples used here)."""
        values = {**settings, **overrides}
        for rule in ("lr_scaling_width", "token_width_exponent"):  # applied by the plan: `lr` and `train_tokens`
            values.pop(rule, None)  # are the run's own (plan.peak_lr, plan.run_tokens)
        values["operations"] = tuple(sorted(values["operations"].items()))
        values["example_format"] = tuple(sorted(data.format_shares(values.get("example_format", "plain")).items()))
        return cls(**values)

    @property
    def total_steps(self) -> int:
        return plan.total_steps(self.train_tokens, self.batch_rows, self.n_ctx, self.examples_per_row,
                                self.document, dict(self.operations), dict(self.example_format))

    @property
    def checkpoint_steps(self) -> list[int]:
        return plan.checkpoint_steps(self.total_steps, self.checkpoints, self.first_checkpoint_fraction)

    @property
    def run(self) -> str:
        return plan.run_name(self.family, self.width, self.n_ctx, self.seed)


def learning_rate(step: int, s: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to `final_lr_fraction` of the peak (step counts from 1)."""
    warmup = max(1, round(s.warmup_fraction * s.total_steps))
    if step <= warmup:
        return s.lr * step / warmup
    progress = (step - warmup) / max(1, s.total_steps - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return s.lr * (s.final_lr_fraction + (1 - s.final_lr_fraction) * cosine)


def packed_rows(s: TrainSettings, encode, n_rows: int, *, held_out: bool, seed: int):
    """`n_rows` packed rows of `s`'s corpus: (input ids, labels, token count), as `data.pack_rows`."""
    rng = np.random.default_rng(seed)
    documents, separator = data.training_documents(s.document, dict(s.operations), rng, encode, held_out=held_out,
                                                   n_ctx=s.n_ctx, max_examples=s.examples_per_row,
                                                   example_format=dict(s.example_format),
                                                   plus_one_share=s.plus_one_share)
    return data.pack_rows(documents, n_rows, s.n_ctx, encode(separator), pad_id=0, max_examples=s.examples_per_row)


def packed_heldout_rows(s: TrainSettings, n_rows: int):
    """`n_rows` packed rows of problems never trained on, from the run's held-out seed."""
    return packed_rows(s, encode_text, n_rows, held_out=True, seed=10_000 + s.seed)


def _answer_loss(model, input_ids: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model(input_ids=input_ids, labels=labels).loss)


# Dense bf16 peak of the GPUs the GPU preset targets (H100/H200 SXM: 989 TFLOP/s); None where unknown
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}


def model_flops_utilisation(nonembedding_params: int, tokens: int, seconds: float, gpu: str | None) -> float | None:
    """Training MFU: achieved 6ND FLOP/s over the bf16 peak of the GPU named `gpu` (None on the CPU or an unknown
    GPU)."""
    if gpu is None:
        return None
    peak = next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in gpu), None)
    return None if peak is None else round(training_flops(nonembedding_params, tokens) / seconds / peak, 4)


def training_machine(device: str, threads: int) -> dict:
    """Where the weights were computed: the machine, torch's CPU kernel set (AVX2, AVX512, ...), threads, GPU."""
    return {**machine(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": threads,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None}


def train_ladder_run(settings: TrainSettings, out_dir: str | Path, on_step=None) -> list[dict]:
    """Train and write `out_dir/step<N>/` for each checkpoint step; return the checkpoints' metadata.

    The training and held-out rows come from disjoint halves of the problem space (see `data`), from seeds
    derived from `settings.seed`; the same settings on the same thread count give the same weights.
    `on_step(step, tokens_seen, model)`, if given, runs after every optimizer step with the model in train mode,
    which it must leave so: a probe of the training curve (`bench/plateau.py`).
    """
    s = settings
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    if s.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"run {s.run}: device 'cuda' asked for (models[].device) but torch sees no GPU "
                               f"here; set the family's device to cpu or run where a GPU is.")
        # One setting, one set of weights on a GPU type: two H200 runs of one setting parted by step 500 without
        # this (docs/benchmarks.md). cuBLAS needs a fixed workspace for it; a kernel with no deterministic form
        # warns instead of failing the run.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    tokenizer = build_tokenizer()
    size = plan.model_size(s.width, s.n_ctx)
    model = size.build(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = factor_digit_embeddings(model).to(s.device)
    # bf16 matrix units on a GPU (float32 master weights); float32 on the CPU, where bf16 is slower
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=s.device == "cuda")

    train_ids, train_labels, _ = packed_rows(s, encode_text, s.total_steps * s.batch_rows, held_out=False, seed=s.seed)
    heldout_ids, heldout_labels, _ = packed_heldout_rows(s, s.heldout_rows)
    heldout_ids = torch.from_numpy(heldout_ids).to(s.device)
    heldout_labels = torch.from_numpy(heldout_labels).to(s.device)
    tokens_per_row = (train_ids != 0).sum(axis=1)
    row_lengths = s.n_ctx - np.argmax((train_ids != 0)[:, ::-1], axis=1)  # rows are padded at the end only

    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices decay; biases and LayerNorms don't
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
        betas=s.betas,
        fused=True if s.device == "cuda" else None,  # one kernel for all parameters: launches bound small models
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("run %s: %s, %d params (%d non-embedding), %d steps, checkpoints at %s",
             s.run, size, size.total_params(), size.nonembedding_params(), s.total_steps, s.checkpoint_steps)

    trained_on = training_machine(s.device, s.threads)
    start, tokens_seen, recent_losses, saved = time.perf_counter(), 0, [], []
    model.train()
    for step in range(1, s.total_steps + 1):
        rows = slice((step - 1) * s.batch_rows, step * s.batch_rows)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, s)
        # input_ids, labels: (batch_rows, n_ctx); trailing pads need no attention mask under causal attention
        width = int(row_lengths[rows].max())  # drop all-pad columns: no compute on padding
        with autocast:
            loss = model(input_ids=torch.from_numpy(train_ids[rows, :width]).to(s.device, non_blocking=True),
                         labels=torch.from_numpy(train_labels[rows, :width]).to(s.device, non_blocking=True)).loss
        if not torch.isfinite(loss) or loss.item() > s.loss_explosion:
            raise TrainingDiverged(
                f"run {s.run}: training diverged, loss {loss.item():.4g} at step {step}/{s.total_steps}. Lower lr "
                f"(now {s.lr}) of the family {s.family!r} in the config (models[].lr), or lengthen its warmup "
                f"(models[].warmup_fraction, now {s.warmup_fraction}), and rerun."
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += int(tokens_per_row[rows].sum())
        if on_step is not None:
            on_step(step, tokens_seen, model)
        recent_losses = (recent_losses + [loss.item()])[-50:]
        if step % 100 == 0 or step == s.total_steps:
            elapsed = time.perf_counter() - start
            log.info("%s step %d/%d loss %.4f lr %.2e %.0f tok/s", s.run, step, s.total_steps,
                     np.mean(recent_losses), learning_rate(step, s), tokens_seen / elapsed)
        if step in s.checkpoint_steps:
            model.eval()
            meta = {
                "model_id": plan.checkpoint_id(s.run, step),
                "family": s.family,
                "source": "ladder",
                "run": s.run,
                "architecture": type(model).__name__,
                "size": size.to_dict(),
                "params": size.total_params(),
                "nonembedding_params": size.nonembedding_params(),
                "train_tokens": tokens_seen,
                "train_flops": training_flops(size.nonembedding_params(), tokens_seen),
                "checkpoint_step": step,
                "total_steps": s.total_steps,
                "final_checkpoint": step == s.total_steps,
                "seed": s.seed,
                "wall_time_s": round(time.perf_counter() - start, 2),
                "device": s.device,
                "machine": trained_on,
                "train_tokens_per_s": round(tokens_seen / (time.perf_counter() - start), 1),
                "train_mfu": model_flops_utilisation(size.nonembedding_params(), tokens_seen,
                                                     time.perf_counter() - start, trained_on["gpu"]),
                "train_loss": float(np.mean(recent_losses)),
                "heldout_loss": _answer_loss(model, heldout_ids, heldout_labels),
                "revision": None,
                "settings": asdict(s),
            }
            saved.append(save_checkpoint(plain_copy(model), tokenizer, meta, out_dir / f"step{step}"))
            log.info("saved %s: held-out answer loss %.4f", meta["model_id"], meta["heldout_loss"])
            model.train()
    return saved


def save_checkpoint(model, tokenizer, meta: dict, path: Path) -> dict:
    """Write an HF model directory plus `model.json` (metadata with each file's sha256), atomically."""
    with modeldir.staged(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return modeldir.commit(tmp, path, {**meta, "files": modeldir.file_checksums(tmp)})
