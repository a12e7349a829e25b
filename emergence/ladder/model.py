"""Model sizes of the ladder, all derived from one knob: the width (d_model).

The architecture is a minimal GPT (pre-LN, GELU MLP, tied input/output embeddings, output projections
initialised with std 0.02/sqrt(2 * n_layer)) with rotary positions, built as `transformers`' GPT-NeoX with a
sequential residual, so every checkpoint saves and loads like a hub model. Rotary (relative) positions make a
problem look the same wherever it sits in a row or a k-shot prompt: with learned absolute positions, rows of
several problems trained about half as fast per token in probes here, and k-shot queries sat at positions
barely trained. While training, the digit tokens' embedding rows are digit + place (`embedding`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

HEAD_DIM = 8  # width per attention head: more heads were the lever for learning arithmetic (see `from_width`)
MAX_HEADS = 16


@dataclass(frozen=True)
class ModelSize:
    """Everything about a ladder model's shape; `from_width` is the only constructor the pipeline uses."""

    width: int  # d_model
    n_layer: int
    n_head: int
    n_ctx: int
    vocab_size: int

    @classmethod
    def from_width(cls, width: int, *, n_ctx: int, vocab_size: int) -> ModelSize:
        """Two layers up to width 128, then one per 64 dims (192 -> 3, 512 -> 8); heads of 8 dims (at most 16,
        then wider heads: 512 -> 16 heads of 32).

        Heads, not depth, were the lever in probes here: at width 64, 2 layers x 4 heads reached 0.96 exact
        match on BIG-bench's 2-digit addition from 1M tokens where 2 x 2 heads sat at 0.08 and 4 x 2 at 0.10; at
        width 96 on a mixture of 2-digit addition and subtraction, 12 heads of 8 left the loss plateau by 1.5-2M
        tokens on both seeds tried (exact match 0.93-1.0 on both subtasks after 3M) where 6 heads of 16 reached
        0.11-0.47 after 2.5M."""
        if width < 8 or width % 8:
            raise ValueError(f"ladder width must be a positive multiple of 8, got {width}")
        n_head = min(MAX_HEADS, width // HEAD_DIM)
        if width % n_head:
            raise ValueError(f"ladder width {width} does not split into {n_head} heads; from width "
                             f"{MAX_HEADS * HEAD_DIM} on use a multiple of {MAX_HEADS}")
        return cls(
            width=width,
            n_layer=max(2, math.ceil(width / 64)),
            n_head=n_head,
            n_ctx=n_ctx,
            vocab_size=vocab_size,
        )

    @property
    def name(self) -> str:
        return f"d{self.width}L{self.n_layer}"

    def nonembedding_params(self) -> int:
        """Parameters outside the token embedding (Kaplan et al. 2020), counted exactly.

        Per layer: 2 LayerNorms (4d), attention qkv (3d^2 + 3d) and output (d^2 + d), MLP (8d^2 + 5d);
        plus the final LayerNorm (2d). The tied LM head adds nothing.
        """
        d = self.width
        per_layer = 12 * d * d + 13 * d
        return self.n_layer * per_layer + 2 * d

    def total_params(self) -> int:
        return self.nonembedding_params() + self.vocab_size * self.width  # rotary positions have no parameters

    def to_hf_config(self, *, pad_token_id: int, eos_token_id: int):
        from transformers import GPTNeoXConfig  # heavy; the Snakefile plans sizes without it

        return GPTNeoXConfig(
            vocab_size=self.vocab_size,
            max_position_embeddings=self.n_ctx,
            hidden_size=self.width,
            num_hidden_layers=self.n_layer,
            num_attention_heads=self.n_head,
            intermediate_size=4 * self.width,
            hidden_act="gelu",  # exact GELU: one fused kernel (the tanh form is several, ~half the CPU time)
            rotary_pct=1.0,
            use_parallel_residual=False,  # x + attn(ln(x)), then + mlp(ln(.)): GPT-2's block
            hidden_dropout=0.0,  # no dropout: the corpus is effectively infinite and training is short
            attention_dropout=0.0,
            tie_word_embeddings=True,
            bos_token_id=eos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )

    def build(self, *, pad_token_id: int, eos_token_id: int):
        import torch  # imported here with transformers: sizes are planned without either
        from transformers import GPTNeoXForCausalLM  # heavy, as torch above

        model = GPTNeoXForCausalLM(self.to_hf_config(pad_token_id=pad_token_id, eos_token_id=eos_token_id))
        for name, param in model.named_parameters():  # GPT-2's scaled init of the residual outputs
            if name.endswith(("attention.dense.weight", "mlp.dense_4h_to_h.weight")):
                torch.nn.init.normal_(param, 0.0, 0.02 / math.sqrt(2 * self.n_layer))
        return model

    def to_dict(self) -> dict:
        return asdict(self)


def training_flops(nonembedding_params: int, tokens: int) -> float:
    """Training compute C ~= 6 N D (Kaplan et al. 2020): 2 FLOPs per parameter per token forward, 4 backward.

    N excludes embeddings, whose lookups cost no multiply-adds.
    """
    return 6.0 * nonembedding_params * tokens
