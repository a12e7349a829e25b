"""GPU checks of the evaluation path, for a CUDA machine (CI has none). One line per check, exit 1 on a failure.

1. The pipeline's own `evaluate_cells` on CUDA (bf16, the emergence backend) against the same cells on CPU in
   float32, on a briefly trained ladder model: a generative task (addition, 2-shot) and a multiple-choice
   BIG-bench task (the truthful_qa fixture): per-sample log-likelihood differences within bf16 rounding, and the
   same answers wherever the float32 margin between the best and second-best choice is clear.
2. Out-of-memory halving on a real GPU: a Pythia-1B-shaped model under a memory cap is given a batch too large for
   it; the batch halves (logged) and the log-likelihoods equal those of a small batch within bf16 rounding.

`python bench/gpu_check.py`
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def report(name: str, ok: bool, detail: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return ok


def check_cells_agree(root: Path) -> bool:
    from emergence.evaluate import evaluate_cells
    from emergence.ladder.train import TrainSettings, train_ladder_run
    from emergence.strategies import load_strategy
    from emergence.tasks.arithmetic import write_arithmetic_task
    from emergence.tasks.bigbench import write_bigbench_task

    settings = TrainSettings.from_config({"width": 64, "train_tokens": 300_000, "checkpoints": 1, "n_ctx": 1024,
                                          "operations": {"addition_3digit": 1.0}})
    train_ladder_run(settings, root / "model")
    write_arithmetic_task("addition_3digit", root / "addition", n_eval=200, n_fewshot_pool=20, seed=0)
    write_bigbench_task("truthful_qa", REPO / "tests/fixtures/bigbench/truthful_qa", root / "truthful_qa",
                        n_eval=4, n_fewshot_pool=4, seed=0)
    ok = True
    for task, strategy in (("addition", "2shot"), ("truthful_qa", "1shot")):
        tables = {}
        for device in ("cpu", "cuda"):
            start = time.perf_counter()
            tables[device] = evaluate_cells(root / "model", root / task, load_strategy(strategy),
                                            root / f"{task}-{device}.parquet", device=device, batch_size="auto")
            print(f"# {task} {strategy} on {device}: {len(tables[device])} samples in "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
        cpu, gpu = tables["cpu"], tables["cuda"]
        diff = np.abs(cpu.target_logprob - gpu.target_logprob) / np.maximum(1.0, np.abs(cpu.target_logprob))
        detail = f"max relative |log-likelihood difference| {diff.max():.2e}"
        detail += f"; exact match cpu {cpu.exact_match.mean():.3f} cuda {gpu.exact_match.mean():.3f}"
        if cpu.choice_logprobs.notna().any():  # choices: the same pick wherever float32's margin is clear
            clear = cpu.choice_logprobs.map(lambda lp: np.diff(np.sort(lp)[-2:])[0]) > 0.1
            same = (cpu.answer == gpu.answer)[clear].mean()
            detail += f"; same choice on {same:.1%} of {int(clear.sum())} clear samples"
        else:  # greedy text: bf16 may flip a near-tie token of a barely trained model, so this is reported only
            same = 1.0
            detail += f"; same generation on {(cpu.generation == gpu.generation).mean():.1%} (not a criterion)"
        ok &= report(f"cells {task} {strategy} cuda-bf16 vs cpu-fp32", diff.max() < 0.02 and same >= 0.95, detail)
    return ok


def check_oom_halving() -> bool:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from emergence.backend import FastLM
    from emergence.ladder.tokenizer import build_tokenizer

    config = GPTNeoXConfig(vocab_size=50304, hidden_size=2048, num_hidden_layers=16, num_attention_heads=8,
                           intermediate_size=8192, rotary_pct=0.25, max_position_embeddings=2048)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = GPTNeoXForCausalLM._from_config(config, dtype=torch.bfloat16).eval()
    tokenizer = build_tokenizer()
    rng = np.random.default_rng(0)
    alphabet = "0123456789+-= abcdefghij"
    requests = [("".join(rng.choice(list(alphabet), 1500)), " " + "".join(rng.choice(list(alphabet), 20)))
                for _ in range(256)]

    class Request:  # what lm-eval hands a model: `.args`
        def __init__(self, args):
            self.args = args

    reqs = [Request(r) for r in requests]
    small = FastLM.from_model(model, tokenizer, device="cuda", dtype=torch.bfloat16, batch_size=4)
    reference = np.array([x for x, _ in small.loglikelihood(reqs)])
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(5e9 / total)  # 5 GB: the 2 GB model and a modest batch
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("emergence.backend").addHandler(handler)
    big = FastLM.from_model(model, tokenizer, device="cuda", dtype=torch.bfloat16, batch_size=256)
    start = time.perf_counter()
    halved = np.array([x for x, _ in big.loglikelihood(reqs)])
    seconds = time.perf_counter() - start
    torch.cuda.set_per_process_memory_fraction(1.0)
    warnings = [r.getMessage() for r in records if "memory" in r.getMessage().lower()]
    diff = np.abs(halved - reference).max() / np.abs(reference).max()
    return report("out-of-memory halving (Pythia-1B shape, 5 GB cap, 256 rows x ~1520 tokens)",
                  bool(warnings) and big.engine.max_rows is not None and big.engine.max_rows < 256 and diff < 0.01,
                  f"{len(warnings)} halvings logged ({warnings[-1] if warnings else 'none'}); rows now "
                  f"{big.engine.max_rows}; relative difference to batch 4: {diff:.2e}; {seconds:.1f} s")


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    logging.basicConfig(level=logging.WARNING)
    print(f"# {torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ok = check_cells_agree(Path(tmp))
    ok &= check_oom_halving()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
