"""GPT-2 specifics (the ladder's architecture): its last block run only at the positions whose hidden state is
needed, and the fused form of its GELU."""

from __future__ import annotations

import torch
from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation


def fuse_activations(model: torch.nn.Module) -> int:
    """Replace `NewGELUActivation`/`FastGELUActivation` modules with the fused `GELUTanh` (same formula, one kernel;
    on CPU the unfused form is half of a ladder model's forward time). Returns how many were replaced."""
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(module, name, GELUTanh())
                replaced += 1
    return replaced


def supports_partial_last(config, base) -> bool:
    """Whether `finish_last_block` reproduces this model's last block (checked numerically as well, see Engine)."""
    return (config.model_type == "gpt2" and not config.add_cross_attention and not config.reorder_and_upcast_attn
            and hasattr(base, "h"))


def kv_shape(base, rows: int, length: int) -> tuple[int, int, int, int]:
    """The last block's key/value buffer shape [B, H, T, dh]."""
    attn = base.h[-1].attn
    return (rows, attn.num_heads, length, attn.head_dim)


class Capture(torch.nn.Module):
    """Stands in for a model's last block: keeps the block's input and computes nothing."""

    def forward(self, hidden_states, *args, **kwargs):
        self.hidden = hidden_states
        return hidden_states


def forward_before_last_block(base, **kwargs) -> torch.Tensor:
    """Run the base model without its last block; return that block's input [B, T, d]."""
    blocks, capture = base.h, Capture()
    last, blocks[-1] = blocks[-1], capture
    try:
        base(**kwargs)
    finally:
        blocks[-1] = last
    return capture.hidden


def finish_last_block(base, hidden, keys, values, prefix_valid, start, count):
    """The last GPT-2 block on the scored windows only: the log-likelihood needs the final hidden state at a
    few positions per row, so every other position needs only its keys and values there (in a 2-layer ladder
    model that is 40% of the forward pass saved, in a 1-layer one 70%). Same arithmetic as `GPT2Block`.

    hidden [B, S, d]: the block's input; keys/values [B, H, W + S, dh]: buffers whose first W slots hold a cached
    prefix (W may be 0), valid where prefix_valid [B, W]; start/count [B]: row b's scored positions are
    start[b] .. start[b] + count[b] - 1 of hidden. Returns the final hidden states of the windows [B, C, d].
    """
    block = base.h[-1]
    attn = block.attn
    n_rows, n_new, width = hidden.shape
    prefix = keys.shape[2] - n_new

    def heads(t):  # [B, T, d] -> [B, H, T, dh]
        return t.view(n_rows, t.shape[1], attn.num_heads, attn.head_dim).transpose(1, 2)

    query, key, value = attn.c_attn(block.ln_1(hidden)).split(attn.split_size, dim=2)  # [B, S, d] each
    keys[:, :, prefix:] = heads(key)
    values[:, :, prefix:] = heads(value)
    rows = torch.arange(n_rows, device=hidden.device)[:, None]
    window = start[:, None] + torch.arange(int(count.max()), device=hidden.device)[None]  # [B, C]
    window = window.clamp(max=n_new - 1)  # past a row's count: any position, its output is not used
    slots = torch.arange(prefix + n_new, device=hidden.device)
    mask = torch.cat([prefix_valid, prefix_valid.new_ones(n_rows, n_new)], 1)[:, None, :] & (
        slots[None, None, :] <= prefix + window[:, :, None])  # [B, C, W + S]: valid prefix, causal
    out = torch.nn.functional.scaled_dot_product_attention(
        heads(query[rows, window]), keys, values, attn_mask=mask[:, None], scale=attn.scaling)  # [B, H, C, dh]
    h = hidden[rows, window] + attn.c_proj(out.transpose(1, 2).reshape(n_rows, -1, width))
    h = h + block.mlp(block.ln_2(h))
    return base.ln_f(h)
