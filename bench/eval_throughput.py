"""Log-likelihood throughput of lm-eval's stock `HFLM` against the `emergence` backend on the same requests.

The requests are lm-eval's own: 3-shot prompts of 3-digit addition (a task written by `write_arithmetic_task`,
exemplars sampled by lm-eval from a pool of 50) scored on the gold answer, as a `loglikelihood` view built through
lm-eval's task machinery. Each backend scores all of them; a third row is the ceiling the issue measured against,
a plain batched forward pass over the same token sequences (right-padded, sorted by length, full logits).

On CPU the models are ladder GPT-2s (float32), freshly initialised: width 128 (the default ladder's largest) and
192. On CUDA they are GPT-NeoX models shaped like Pythia-160M and Pythia-1B, randomly initialised from their
configs in bfloat16 (nothing is downloaded), with a byte-level BPE like Pythia's (`--tokenizer bpe`, the default
there: Pythia's own cannot be downloaded here, so one is trained on the requests' text; numbers become a few
tokens, as in GPT-NeoX's vocabulary) or the ladder's character tokenizer (`--tokenizer char`). Every backend is
warmed up first; the table reports the best of `--repeats` interleaved runs (this machine's CPUs are shared).
The last line is the speedup on the first model:

    speedup_vs_lm_eval: <emergence tokens/s / HFLM tokens/s>
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch

PYTHIA = {  # GPT-NeoX shapes of the Pythia suite (Biderman et al. 2023)
    "pythia-160m": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "pythia-1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 8},
}


def build_requests(n: int, workdir: Path, view: str = "ll", seed: int = 1234) -> list:
    """n lm-eval `Instance`s of 3-shot addition as `simple_evaluate` builds them: the `ll` view scores the gold
    answer after the prompt, the `gen` view generates greedily until a newline."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from emergence.tasks.arithmetic import write_arithmetic_task

    if not (workdir / "task" / "task.json").exists():
        write_arithmetic_task("addition_3digit", workdir / "task", n_eval=n, n_fewshot_pool=50, seed=0)
    manager = TaskManager(include_path=str(workdir / "task"), include_defaults=False)
    name = f"addition_3digit_{view}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = get_task_dict([name], manager)[name]
    task.set_config(key="num_fewshot", value=3)
    task.set_fewshot_seed(seed=seed)
    task.build_all_requests(limit=n, rank=0, world_size=1)
    return list(task.instances)


def bpe_tokenizer(texts: list[str], vocab_size: int = 4096):
    """A byte-level BPE (GPT-NeoX's scheme) trained on `texts`, as a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   clean_up_tokenization_spaces=False)


def cpu_models(workdir: Path):
    """Ladder GPT-2s of width 128 and 192 (n_ctx 256: 3-shot prompts fit), saved as HF model directories."""
    from emergence.ladder.model import ModelSize
    from emergence.ladder.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    for width in (128, 192):
        torch.manual_seed(0)
        size = ModelSize.from_width(width, n_ctx=256, vocab_size=len(tokenizer))
        model = size.build(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        path = workdir / size.name
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        yield f"ladder-{size.name}", str(path)


def pythia_model(shape: dict, device: str = "cuda", dtype: torch.dtype = torch.bfloat16):
    """A Pythia-shaped GPT-NeoX, random init, built directly on `device` in `dtype` (nothing is downloaded)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(vocab_size=50304, intermediate_size=4 * shape["hidden_size"], rotary_pct=0.25,
                           max_position_embeddings=2048, use_parallel_residual=True, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = GPTNeoXForCausalLM._from_config(config, dtype=dtype)
    return model.eval()


class Plain:
    """The ceiling: the same token sequences through a plain batched forward pass (full logits), nothing else."""

    def __init__(self, model, sequences: list[list[int]], batch_size: int, device: torch.device) -> None:
        self.model, self.batch_size, self.device = model, batch_size, device
        self.sequences = sorted(sequences, key=len, reverse=True)

    @torch.inference_mode()
    def __call__(self, requests) -> None:
        for start in range(0, len(self.sequences), self.batch_size):
            batch = self.sequences[start:start + self.batch_size]
            ids = torch.zeros(len(batch), len(batch[0]), dtype=torch.long)
            for i, seq in enumerate(batch):
                ids[i, : len(seq)] = torch.tensor(seq)
            _ = self.model(ids.to(self.device)).logits
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def run_model(label, hflm, fast, device, dtype, requests, batch_size, repeats, warmup, ablations,
              unfused=None) -> list[dict]:
    """Time HFLM, the emergence backend and the plain forward on `requests`, interleaved; rows for the table.
    `ablations`: also the backend with one of its shortcuts off (`unfused`: a copy without fused activations)."""
    pairs = [hflm._encode_pair(*r.args) for r in requests]
    sequences = [(c + x)[-(hflm.max_length + 1):][:-1] for c, x in pairs]
    tokens = sum(len(s) + 1 for s in sequences)
    runs = {
        "lm-eval HFLM": lambda reqs: hflm.loglikelihood(reqs, disable_tqdm=True),
        "emergence": fast.loglikelihood,
        "plain forward": Plain(hflm.model, sequences, batch_size, device),
    }
    if ablations:
        def variant(**settings):
            def run(reqs):
                saved = {k: getattr(fast.engine, k) for k in settings}
                for k, v in settings.items():
                    setattr(fast.engine, k, v)
                try:
                    return fast.loglikelihood(reqs)
                finally:
                    for k, v in saved.items():
                        setattr(fast.engine, k, v)
            return run
        runs["emergence, no prefix sharing"] = variant(min_shared_prefix=10**9)
        if fast.engine.partial_last:
            runs["emergence, full last block"] = variant(partial_last=False)
        if unfused is not None:
            runs["emergence, unfused GELU"] = unfused.loglikelihood
        if device.type == "cuda":  # larger batches amortise kernel launches; prefix groups add launches
            runs["emergence, 4x batch tokens"] = variant(batch_tokens=4 * fast.engine.batch_tokens)
            runs["emergence, no prefix sharing, 4x batch tokens"] = variant(min_shared_prefix=10**9,
                                                                             batch_tokens=4 * fast.engine.batch_tokens)
    runs["lm-eval HFLM"](requests[:warmup])  # warm-up (kernels, allocator, lazy imports), not timed
    fast.loglikelihood(requests[:warmup])
    Plain(hflm.model, sequences[:warmup], batch_size, device)(None)
    times = {name: [] for name in runs}
    results = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            out = fn(requests)
            times[name].append(time.perf_counter() - start)
            if out is not None:
                results[name] = out
    diff = max(abs(a[0] - b[0]) for a, b in zip(results["lm-eval HFLM"], results["emergence"]))
    greedy = sum(a[1] == b[1] for a, b in zip(results["lm-eval HFLM"], results["emergence"]))
    fast.loglikelihood(requests)  # for its stats
    print(f"# {label}: max |log-likelihood difference| emergence vs HFLM {diff:.2e}; "
          f"greedy flags equal {greedy}/{len(requests)}; emergence ran {fast.engine.stats['tokens_run']:,} of "
          f"{fast.engine.stats['tokens']:,} input tokens ({fast.engine.stats['groups']} shared prefixes)", flush=True)
    rows = []
    for name, ts in times.items():
        batch = fast.batch_size if name.startswith("emergence") else batch_size
        rows.append({"model": label, "backend": name, "device": device.type, "dtype": dtype, "batch": batch,
                     "requests": len(requests), "tokens": tokens, "seconds": min(ts),
                     "tokens/s": tokens / min(ts)})
    return rows


def run_generation(label, hflm, fast, device, dtype, requests, batch_size, repeats) -> list[dict]:
    """Time greedy `generate_until` (HFLM vs the backend) on the same requests; rows for the table. Tokens are the
    prompts' tokens plus the generated ones."""
    hflm.generate_until(requests[:16], disable_tqdm=True)  # warm-up
    fast.generate_until(requests[:16])
    times, outputs = {"lm-eval HFLM": [], "emergence": []}, {}
    for _ in range(repeats):
        for name, fn in [("lm-eval HFLM", lambda r: hflm.generate_until(r, disable_tqdm=True)),
                         ("emergence", fast.generate_until)]:
            start = time.perf_counter()
            outputs[name] = fn(requests)
            times[name].append(time.perf_counter() - start)
    same = sum(a == b for a, b in zip(outputs["lm-eval HFLM"], outputs["emergence"]))
    print(f"# {label}: generations equal {same}/{len(requests)}", flush=True)
    tokens = sum(len(hflm.tok_encode(r.args[0])) for r in requests)
    tokens += sum(len(hflm.tok_encode(g)) for g in outputs["emergence"])
    return [{"model": label, "backend": f"{name}, generate", "device": device.type, "dtype": dtype,
             "batch": fast.batch_size if name == "emergence" else batch_size, "requests": len(requests),
             "tokens": tokens, "seconds": min(ts), "tokens/s": tokens / min(ts)} for name, ts in times.items()]


def print_table(rows: list[dict]) -> None:
    columns = ["model", "backend", "device", "dtype", "batch", "requests", "tokens", "seconds", "tokens/s"]
    cells = [[str(r[c]) if c not in ("seconds", "tokens/s") else
              (f"{r[c]:.2f}" if c == "seconds" else f"{r[c]:,.0f}") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 2 on CPU)")
    parser.add_argument("--batch-size", type=int, default=64, help="HFLM's and the plain forward's batch size")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per backend (default: 3 CPU, 2 GPU)")
    parser.add_argument("--models", nargs="*", help="labels to run (default: all for the device)")
    parser.add_argument("--ablations", action="store_true",
                        help="also time the backend with each shortcut off (prefix sharing, short last block, fusion)")
    parser.add_argument("--tokenizer", choices=["bpe", "char"], default="bpe",
                        help="CUDA models' tokenizer (default: a byte-level BPE like Pythia's)")
    parser.add_argument("--generate", type=int, default=0, metavar="N",
                        help="also time greedy generation of N requests on the first model (default: 0, off)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 2)
    repeats = args.repeats or (3 if args.device == "cpu" else 2)
    logging.basicConfig(level=logging.ERROR)
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    from lm_eval.models.huggingface import HFLM

    from emergence.backend import FastLM
    from emergence.ladder.tokenizer import build_tokenizer

    device = torch.device(args.device)
    machine = (torch.cuda.get_device_name() if args.device == "cuda"
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    print(f"# {datetime.date.today()} {machine}; torch {torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        requests = build_requests(args.requests, Path(tmp))
        warmup = min(len(requests), 128)
        if args.device == "cpu":
            for label, path in cpu_models(Path(tmp)):
                if args.models and label not in args.models:
                    continue
                hflm = HFLM(pretrained=path, tokenizer=path, device="cpu", dtype="float32", batch_size=args.batch_size)
                fast = FastLM(pretrained=path, device="cpu", dtype="float32")
                unfused = FastLM(pretrained=path, device="cpu", fuse_activations=False) if args.ablations else None
                rows += run_model(label, hflm, fast, device, "float32", requests, args.batch_size, repeats, warmup,
                                  args.ablations, unfused)
                if args.generate and label == "ladder-d128L2":
                    gen = build_requests(args.generate, Path(tmp), view="gen")
                    rows += run_generation(label, hflm, fast, device, "float32", gen, args.batch_size, repeats)
        else:
            tokenizer = (bpe_tokenizer([r.args[0] + r.args[1] for r in requests])
                         if args.tokenizer == "bpe" else build_tokenizer())
            for label, shape in PYTHIA.items():
                if args.models and label not in args.models:
                    continue
                model = pythia_model(shape)
                hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size)
                fast = FastLM.from_model(model, tokenizer, device="cuda", dtype=torch.bfloat16)
                rows += run_model(label, hflm, fast, device, "bfloat16", requests, args.batch_size, repeats, warmup,
                                  args.ablations)
                if args.generate and label == "pythia-160m":
                    gen = build_requests(args.generate, Path(tmp), view="gen")
                    rows += run_generation(label, hflm, fast, device, "bfloat16", gen, args.batch_size, repeats)
                del model, hflm, fast
                torch.cuda.empty_cache()
    print_table(rows)
    main_model = rows[0]["model"]
    speed = {r["backend"]: r["tokens/s"] for r in rows if r["model"] == main_model}
    print(f"speedup_vs_lm_eval: {speed['emergence'] / speed['lm-eval HFLM']:.2f}")


if __name__ == "__main__":
    main()
