import pytest

from emergence.ladder import plan
from emergence.ladder.model import ModelSize, training_flops


@pytest.mark.parametrize("width", [16, 32, 64, 96, 128])
def test_parameter_counts_match_the_built_model(width):
    size = plan.model_size(width, n_ctx=128)
    model = size.build(pad_token_id=0, eos_token_id=1)
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.get_input_embeddings().weight.numel()  # rotary positions: no position embedding
    assert size.total_params() == total
    assert size.nonembedding_params() == total - embeddings


def test_depth_and_heads_follow_width():
    sizes = [plan.model_size(w, n_ctx=128) for w in (16, 32, 64, 96, 128, 192, 512)]
    assert [s.n_layer for s in sizes] == [2, 2, 2, 2, 2, 3, 8]
    assert [s.n_head for s in sizes] == [2, 4, 8, 12, 16, 16, 16]
    assert sizes[4].nonembedding_params() / sizes[0].nonembedding_params() > 50


def test_training_flops_is_six_n_d():
    assert training_flops(1000, 3_000_000) == 6 * 1000 * 3_000_000


def test_invalid_width_is_refused_with_the_value():
    with pytest.raises(ValueError, match="got 12"):
        ModelSize.from_width(12, n_ctx=128, vocab_size=99)
    with pytest.raises(ValueError, match="width 136 does not split into 16 heads.*multiple of 16"):
        ModelSize.from_width(136, n_ctx=128, vocab_size=99)


def test_checkpoints_are_log_spaced_and_end_at_the_last_step():
    steps = plan.checkpoint_steps(1600, 5, 1 / 16)
    assert steps == [100, 200, 400, 800, 1600]
    assert plan.checkpoint_steps(1600, 1, 1 / 16) == [1600]


def test_peak_lr_falls_as_one_over_width_above_the_scaling_width():
    assert plan.peak_lr(3e-3, 48, 64) == 3e-3
    assert plan.peak_lr(3e-3, 128, 64) == pytest.approx(1.5e-3)
    assert plan.peak_lr(3e-3, 128, None) == 3e-3


def test_run_tokens_grow_with_width_by_the_exponent():
    assert plan.run_tokens(3_000_000, 96, 96, 1.5) == 3_000_000
    assert plan.run_tokens(3_000_000, 24, 96, 1.5) == 375_000  # (1/4)^1.5 = 1/8
    assert plan.run_tokens(3_000_000, 24, 96, 0) == 3_000_000


def test_ladder_runs_carry_their_own_peak_lr_and_tokens():
    from emergence.study import ladder_runs

    family = {"name": "ladder", "widths": [32, 128], "seeds": [0], "train_tokens": 800_000, "batch_rows": 4,
              "examples_per_row": 64, "n_ctx": 128, "lr": 3e-3, "lr_scaling_width": 64, "token_width_exponent": 1,
              "weight_decay": 0.1, "grad_clip": 1.0, "warmup_fraction": 0.05, "checkpoints": 2,
              "first_checkpoint_fraction": 0.25, "operations": {"addition_2digit": 1}, "example_format": "plain",
              "document": "arithmetic", "device": "cpu", "plus_one_share": 0.5}
    settings = {run["settings"]["width"]: run["settings"] for run in ladder_runs(family, "code").values()}
    assert (settings[32]["lr"], settings[32]["train_tokens"]) == (3e-3, 200_000)
    assert (settings[128]["lr"], settings[128]["train_tokens"]) == (pytest.approx(1.5e-3), 800_000)


def test_training_is_deterministic_and_writes_loadable_checkpoints(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emergence.io import read_json
    from emergence.ladder.train import TrainSettings, train_ladder_run

    settings = TrainSettings.from_config({"width": 16, "train_tokens": 20_000, "checkpoints": 2,
                                          "operations": {"addition_3digit": 1.0}})
    first = train_ladder_run(settings, tmp_path / "a")
    second = train_ladder_run(settings, tmp_path / "b")
    assert [m["files"]["model.safetensors"] for m in first] == [m["files"]["model.safetensors"] for m in second]
    assert [m["checkpoint_step"] for m in first] == settings.checkpoint_steps
    final = tmp_path / "a" / f"step{settings.total_steps}"
    meta = read_json(final / "model.json")
    assert meta["final_checkpoint"] and meta["model_id"] == f"ladder-d16L2-s0-step{settings.total_steps}"
    assert meta["train_flops"] == 6 * meta["nonembedding_params"] * meta["train_tokens"]
    assert abs(meta["train_tokens"] - settings.train_tokens) < settings.batch_rows * settings.n_ctx  # a step
    assert meta["heldout_loss"] > 0 and meta["train_loss"] > 0
    assert meta["machine"]["torch_cpu_capability"] and meta["machine"]["threads"] == 1 and meta["machine"]["arch"]
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert model.config.hidden_size == 16 and tokenizer.decode(tokenizer.encode("A: 579")) == "A: 579"
