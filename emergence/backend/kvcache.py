"""Key/value cache helpers: reusable scratch buffers, a cache layer written in place, right padding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers.cache_utils import DynamicLayer


class Scratch:
    """Reusable flat buffers handed out as contiguous tensors of any shape: caches built for every batch would
    otherwise be fresh allocations, and on CPU each fresh page costs a page fault (hundreds of thousands a call)."""

    def __init__(self) -> None:
        self.buffers: dict[object, torch.Tensor] = {}

    def get(self, key, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        numel = int(np.prod(shape))
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.buffers[key] = like.new_empty(max(numel, int(1.25 * numel)))
        return buffer[:numel].view(shape)


class InPlaceLayer(DynamicLayer):
    """One layer's keys/values in a preallocated buffer [B, H, capacity, dh]: each forward writes after the
    `filled` positions in place, where the stock `DynamicLayer` concatenates (a copy of the whole cache per layer
    per call, which dominates a small model's time on CPU). Without buffers given, they come from `scratch` at the
    first update, keyed by `key`."""

    def __init__(self, capacity: int, keys: torch.Tensor | None = None, values: torch.Tensor | None = None,
                 filled: int = 0, scratch: Scratch | None = None, key: object = None) -> None:
        super().__init__()
        self.capacity, self.buffer_k, self.buffer_v, self.filled = capacity, keys, values, filled
        self.scratch, self.key = scratch or Scratch(), key
        if keys is not None:
            self.keys, self.values = keys[:, :, :filled], values[:, :, :filled]
            self.is_initialized, self.device = True, keys.device

    def update(self, key_states, value_states, *args, **kwargs):
        if self.buffer_k is None:
            b, h, _, d = key_states.shape
            self.buffer_k = self.scratch.get((self.key, "k"), (b, h, self.capacity, d), key_states)
            self.buffer_v = self.scratch.get((self.key, "v"), (b, value_states.shape[1], self.capacity,
                                                                value_states.shape[3]), value_states)
            self.is_initialized, self.device = True, key_states.device
        end = self.filled + key_states.shape[-2]
        self.buffer_k[:, :, self.filled:end] = key_states
        self.buffer_v[:, :, self.filled:end] = value_states
        self.filled = end
        self.keys, self.values = self.buffer_k[:, :, :end], self.buffer_v[:, :, :end]
        return self.keys, self.values

    def fill_to(self, filled: int) -> None:
        """Mark the first `filled` positions of the buffers as written (by someone other than `update`)."""
        self.filled, self.is_initialized, self.device = filled, True, self.buffer_k.device
        self.keys, self.values = self.buffer_k[:, :, :filled], self.buffer_v[:, :, :filled]

    def get_seq_length(self) -> int:
        return self.filled



def pad_right(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, np.ndarray]:
    """Token lists -> (ids [B, T] right-padded, lengths [B])."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    ids = np.full((len(rows), int(lengths.max())), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return torch.from_numpy(ids), lengths

