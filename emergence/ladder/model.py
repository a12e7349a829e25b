"""Model sizes of the ladder, all derived from one knob: the width (d_model).

The architecture is a minimal GPT-2 (pre-LN, learned absolute positions, GELU MLP, tied input/output
embeddings, output projections initialised with std 0.02/sqrt(2 * n_layer)), built with `transformers` so every
checkpoint saves and loads like a hub model. In probes here it learned arithmetic about twice as fast per token
as GPT-NeoX (rotary, parallel residual) at these sizes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

HEAD_DIM = 32  # width per attention head; the smallest models get a single (narrower) head


@dataclass(frozen=True)
class ModelSize:
    """Everything about a ladder model's shape; `from_width` is the only constructor the pipeline uses."""

    width: int  # d_model
    n_layer: int
    n_head: int
    n_ctx: int
    vocab_size: int

    @classmethod
    def from_width(cls, width: int, *, n_ctx: int, vocab_size: int) -> "ModelSize":
        """Depth grows with width, one layer per 64 dims rounded up: 16..64 -> 1 layer, 96 and 128 -> 2.

        At peak lr 3e-3, 128x2 learned 3-digit addition (0.96 exact match from 3M tokens) where 128x3 had not
        left its loss plateau (0.03); deeper needs a lower rate (1e-3: 0.95, but 35% slower)."""
        if width < 8 or width % 8:
            raise ValueError(f"ladder width must be a positive multiple of 8, got {width}")
        return cls(
            width=width,
            n_layer=math.ceil(width / 64),
            n_head=max(1, width // HEAD_DIM),
            n_ctx=n_ctx,
            vocab_size=vocab_size,
        )

    @property
    def name(self) -> str:
        return f"d{self.width}L{self.n_layer}"

    def nonembedding_params(self) -> int:
        """Parameters outside the token and position embeddings (Kaplan et al. 2020), counted exactly.

        Per layer: 2 LayerNorms (4d), attention qkv (3d^2 + 3d) and output (d^2 + d), MLP (8d^2 + 5d);
        plus the final LayerNorm (2d). The tied LM head adds nothing.
        """
        d = self.width
        per_layer = 12 * d * d + 13 * d
        return self.n_layer * per_layer + 2 * d

    def total_params(self) -> int:
        return self.nonembedding_params() + (self.vocab_size + self.n_ctx) * self.width

    def to_hf_config(self, *, pad_token_id: int, eos_token_id: int):
        from transformers import GPT2Config  # imported here: the Snakefile plans sizes without transformers

        return GPT2Config(
            vocab_size=self.vocab_size,
            n_positions=self.n_ctx,
            n_embd=self.width,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_inner=4 * self.width,
            activation_function="gelu_new",
            resid_pdrop=0.0,  # no dropout: the corpus is effectively infinite and training is short
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=True,
            bos_token_id=eos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )

    def build(self, *, pad_token_id: int, eos_token_id: int):
        from transformers import GPT2LMHeadModel

        return GPT2LMHeadModel(self.to_hf_config(pad_token_id=pad_token_id, eos_token_id=eos_token_id))

    def to_dict(self) -> dict:
        return asdict(self)


def training_flops(nonembedding_params: int, tokens: int) -> float:
    """Training compute C ~= 6 N D (Kaplan et al. 2020): 2 FLOPs per parameter per token forward, 4 backward.

    N excludes embeddings, whose lookups cost no multiply-adds.
    """
    return 6.0 * nonembedding_params * tokens
