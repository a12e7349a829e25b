"""The `emergence` lm-eval backend against stock HFLM on real (tiny) ladder checkpoints: the same log-likelihoods
(1e-4, float32, CPU), greedy flags and generations; the same per-sample results through `simple_evaluate`; and
out-of-memory halving that really reruns the batches."""

import logging

import numpy as np
import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from emergence.backend import FastLM, plan_prefix_groups
from emergence.ladder.train import TrainSettings, train_ladder_run
from emergence.strategies import load_strategy
from emergence.tasks.arithmetic import write_arithmetic_task
from emergence.tasks.views import write_views

TOL = 1e-4


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    """Two trained checkpoints: width 16 with a 1024-token context, width 32 with the ladder's default 128 (so
    3-shot prompts are truncated), and a task directory with its plain lm-eval views."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("backend")
    ops = {"addition_3digit": 1.0}
    models = {}
    for width, n_ctx in [(16, 1024), (32, 128)]:
        settings = TrainSettings.from_config({"width": width, "train_tokens": 200_000, "batch_rows": 2,
                                              "checkpoints": 1, "n_ctx": n_ctx, "operations": ops, "threads": 2})
        (meta,) = train_ladder_run(settings, root / f"w{width}")
        models[width] = root / f"w{width}" / f"step{meta['checkpoint_step']}"
    write_arithmetic_task("addition_3digit", root / "task", n_eval=24, n_fewshot_pool=6, seed=0)
    models["gpt2"] = _random_gpt2(root / "gpt2", models[16])
    return root, models


def _random_gpt2(path, tokenizer_dir):
    """A small random GPT-2 with the ladder's tokenizer: the backend's GPT-2 path (last block at scored positions
    only), which the rotary ladder does not take."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=64, n_layer=2, n_head=2,
                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _hflm(model_dir, batch_size=8):
    return HFLM(pretrained=str(model_dir), tokenizer=str(model_dir), device="cpu", dtype="float32",
                batch_size=batch_size)


def _requests(kind, args):
    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


def _prompt(i, shots=3):
    """A few-shot addition prompt in the ladder's (BIG-bench's) format; exemplars from a pool of 4, so prompts share
    prefixes."""
    pool = ["\nQ: What is 123 plus 456?\nA: 579", "\nQ: What is 700 plus 210?\nA: 910",
            "\nQ: What is 345 plus 345?\nA: 690", "\nQ: What is 999 plus 101?\nA: 1100"]
    exemplars = [pool[(i + k) % 4] for k in range(shots)] if i % 3 else [pool[k] for k in range(shots)]
    return "\n".join([*exemplars, f"\nQ: What is {100 + 37 * i} plus {250 + 11 * i}?\nA:"])


def _loglikelihood_args():
    args = []
    for i in range(14):
        prompt = _prompt(i, shots=i % 4)
        args += [(prompt, f" {350 + 48 * i}"), (prompt, " True"), (prompt, " False"), (prompt, " ")]
    long_prompt = "\n\n".join(_prompt(i) for i in range(10))  # ~1300 characters: longer than either context
    args += [(long_prompt, " 1234"), (long_prompt + " ", "99"), ("", "Q: What is 1 plus 2?"),
             (long_prompt, " 10" * 30)]  # a 90-token continuation after a context truncated to a few tokens
    return args


@pytest.mark.parametrize("width", [16, 32, "gpt2"])
def test_loglikelihood_matches_hflm(ladder, width):
    _, models = ladder
    requests = _requests("loglikelihood", _loglikelihood_args())
    expected = _hflm(models[width]).loglikelihood(requests, disable_tqdm=True)
    for batch_size in ("auto", 3):
        lm = FastLM(pretrained=str(models[width]), device="cpu", batch_size=batch_size)
        got = lm.loglikelihood(requests)
        np.testing.assert_allclose([g for g, _ in got], [e for e, _ in expected], rtol=0, atol=TOL)
        assert [g for _, g in got] == [e for _, e in expected]
    # the shortcuts were really taken: shared prefixes, and on GPT-2 the last block only at scored positions
    stats = lm.engine.stats
    assert stats["groups"] >= 10 and stats["tokens_run"] < 0.7 * stats["tokens"]
    assert lm.engine.partial_last == (width == "gpt2")
    if width != "gpt2":
        greedy = [e for _, e in expected]
        assert any(greedy) and not all(greedy)  # the flag is really exercised both ways


def test_generations_match_hflm(ladder):
    _, models = ladder
    until = {"until": ["\n"], "do_sample": False, "max_gen_toks": 8}
    args = [(_prompt(i, shots=i % 4), until) for i in range(16)]  # lengths vary within each batch
    args += [(_prompt(i), {"until": ["00", "\n\n"], "do_sample": False, "max_gen_toks": 12}) for i in range(5)]
    args += [("\n\n".join(_prompt(i) for i in range(10)), until),  # longer than max_length - max_gen_toks
             ("Q: What is 1 plus", {"until": [], "max_gen_toks": 5})]
    requests = _requests("generate_until", args)
    for width in (16, 32):
        expected = _hflm(models[width]).generate_until(requests, disable_tqdm=True)
        got = FastLM(pretrained=str(models[width]), device="cpu", batch_size=4).generate_until(requests)
        assert got == expected
        assert len(set(expected)) > 1


def test_gpt_neox_with_rotary_positions_matches_hflm(tmp_path):
    """Pythia's architecture (rotary positions, parallel residual): positions after a cached prefix must be right."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from emergence.ladder.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=256, rotary_pct=0.25, max_position_embeddings=256,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPTNeoXForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    ll = _requests("loglikelihood", _loglikelihood_args()[:40])
    gen = _requests("generate_until", [(_prompt(i, shots=i % 4), {"until": ["\n"], "max_gen_toks": 6})
                                       for i in range(8)])
    hflm, fast = _hflm(tmp_path), FastLM(pretrained=str(tmp_path), device="cpu")
    expected, got = hflm.loglikelihood(ll, disable_tqdm=True), fast.loglikelihood(ll)
    np.testing.assert_allclose([g for g, _ in got], [e for e, _ in expected], rtol=0, atol=TOL)
    assert fast.generate_until(gen) == hflm.generate_until(gen, disable_tqdm=True)


def test_rolling_loglikelihood_matches_hflm(ladder):
    _, models = ladder
    texts = [_prompt(1), "\n\n".join(_prompt(i) for i in range(3))]  # the second spans two 128-token windows
    requests = _requests("loglikelihood_rolling", [(t,) for t in texts])
    expected = _hflm(models[32]).loglikelihood_rolling(requests, disable_tqdm=True)
    got = FastLM(pretrained=str(models[32]), device="cpu").loglikelihood_rolling(requests)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=TOL)  # sums of ~400 float32 terms: relative too


def test_simple_evaluate_gives_hflm_samples(ladder):
    """Both views of a 2-shot strategy and the P(True) multiple-choice view, through lm-eval end to end."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    root, models = ladder
    views = {**write_views(root / "task", load_strategy("2shot"), root / "views"),
             **write_views(root / "task", load_strategy("p_true"), root / "views")}
    task_manager = TaskManager(include_path=str(root / "views"), include_defaults=False)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(models[16]), AutoTokenizer.from_pretrained(models[16])
    model = FastLM.from_model(*loaded, device="cpu")  # one load can serve many cells
    samples = {}
    for name, lm in [("hflm", _hflm(models[16])), ("fast", model)]:
        results = simple_evaluate(model=lm, tasks=list(views.values()), task_manager=task_manager, num_fewshot=2,
                                  bootstrap_iters=0, log_samples=True, random_seed=0, numpy_random_seed=0,
                                  torch_random_seed=0, fewshot_random_seed=0, verbosity="WARNING")
        samples[name] = {task: sorted(s, key=lambda s: s["doc_id"]) for task, s in results["samples"].items()}
    for task, expected in samples["hflm"].items():
        got = samples["fast"][task]
        assert [s["arguments"] for s in got] == [s["arguments"] for s in expected]
        if task == views["gen"]:
            assert [s["resps"] for s in got] == [s["resps"] for s in expected]
            assert [s["exact_match"] for s in got] == [s["exact_match"] for s in expected]
        else:
            for g, e in zip(got, expected):
                np.testing.assert_allclose([r[0][0] for r in g["resps"]], [r[0][0] for r in e["resps"]], atol=TOL)
                assert [r[0][1] for r in g["resps"]] == [r[0][1] for r in e["resps"]]
                assert g["acc"] == e["acc"]


def test_registered_with_lm_eval():
    from lm_eval.api.registry import get_model

    assert get_model("emergence") is FastLM


@pytest.mark.faults
def test_out_of_memory_halves_the_batch_and_reruns_it(ladder, caplog):
    """A forward that raises CUDA's out-of-memory error above 4 rows (the real exception type, on CPU): every
    batch of 16 is retried at 8, then 4, and the results equal one-request-at-a-time results."""
    _, models = ladder
    lm = FastLM(pretrained=str(models[16]), device="cpu", batch_size=16)
    lm.engine.min_shared_prefix = 10**9  # every row in plain batches of 16
    real_forward, seen = lm.engine.forward_fn, []

    def limited(input_ids, **kwargs):
        seen.append(input_ids.shape[0])
        if input_ids.shape[0] > 4:
            raise torch.cuda.OutOfMemoryError("injected: more than 4 rows")
        return real_forward(input_ids, **kwargs)

    lm.engine.forward_fn = limited
    ll = _requests("loglikelihood", _loglikelihood_args())
    gen = _requests("generate_until", [(_prompt(i), {"until": ["\n"], "max_gen_toks": 6}) for i in range(9)])
    with caplog.at_level(logging.WARNING, logger="emergence.backend"):
        got_ll, got_gen = lm.loglikelihood(ll), lm.generate_until(gen)
    assert seen[:3] == [16, 8, 4] and max(seen[3:]) == 4 and lm.engine.max_rows == 4
    assert "retrying with 8" in caplog.text and "retrying with 4" in caplog.text

    single = FastLM(pretrained=str(models[16]), device="cpu", batch_size=1)
    single.engine.min_shared_prefix = 10**9  # no prefix sharing either: each request on its own
    np.testing.assert_allclose([g for g, _ in got_ll], [s for s, _ in single.loglikelihood(ll)], atol=TOL)
    assert got_gen == single.generate_until(gen)

    lm.engine.forward_fn = lambda input_ids, **kwargs: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("always"))
    with pytest.raises(torch.cuda.OutOfMemoryError):  # one row that does not fit is an error, not a loop
        lm.loglikelihood(ll[:1])


def test_prefix_groups_prefer_the_longer_shared_context():
    # rows 0-1 share 40 tokens (one question's options), rows 2-3 share 40, all four share 20 (an instruction)
    assert plan_prefix_groups(np.array([40, 20, 40]), min_prefix=16) == [(0, 1, 40), (2, 3, 40)]
    # a long run sharing 30 tokens beats splitting out one pair that shares 50
    assert plan_prefix_groups(np.array([30, 30, 50, 30, 30]), min_prefix=16) == [(0, 5, 30)]
    assert plan_prefix_groups(np.array([8, 8]), min_prefix=16) == []
