"""The scoring and generation engine behind the `emergence` backend: batching with a token budget and
out-of-memory halving, shared prefixes run once into a key/value cache, the LM head only at scored positions,
greedy generation into a preallocated cache."""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers.cache_utils import Cache

from emergence.backend import gpt2
from emergence.backend.kvcache import InPlaceLayer, Scratch, pad_right
from emergence.backend.prefix import MIN_SHARED_PREFIX, plan_prefix_groups, shared_prefixes

log = logging.getLogger(__name__)

# A token budget per batch: rows x padded length. On CPU small batches stay in cache; on a GPU large ones fill it.
BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}
PREFIX_CACHE_BYTES = {"cpu": 256 << 20, "cuda": 2 << 30}  # key/value memory of the prefixes held at once
HEAD_ELEMENTS = 1 << 24  # scored positions x vocabulary per LM-head chunk (64 MiB of float32 logits)


Forward = Callable[..., tuple[torch.Tensor, object]]


class Engine:
    """Runs a causal model (on its device, in eval mode) for scoring and greedy generation of token rows."""

    def __init__(self, model, tokenizer, *, batch_size: int | str, max_batch_size: int | None, max_length: int):
        """`batch_size`: rows per batch, or "auto" for a token budget per batch; `max_batch_size`: a cap on rows."""
        self._model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self._device = next(model.parameters()).device
        self._base = model.base_model
        # `transformers` 5.24 names the key/value cache `cache`, earlier 5.x `past_key_values`
        self._cache_kwarg = "cache" if "cache" in inspect.signature(self._base.forward).parameters else \
            "past_key_values"
        self._head = model.get_output_embeddings()
        self._batch_size = batch_size
        self.max_batch_size = max_batch_size
        self.max_rows: int | None = None  # lowered by out-of-memory halving, kept for later batches
        self.batch_tokens = BATCH_TOKENS.get(self._device.type, BATCH_TOKENS["cpu"])
        self.prefix_cache_bytes = PREFIX_CACHE_BYTES.get(self._device.type, PREFIX_CACHE_BYTES["cpu"])
        self.min_shared_prefix = MIN_SHARED_PREFIX
        self.stats: dict[str, int] = {}  # set by each scoring call, see `score`
        # right padding is never attended to; any id other than the model's pad id also keeps `transformers` from
        # warning that a padded batch comes without an attention mask
        self.pad_id = next(t for t in (tokenizer.eos_token_id, tokenizer.bos_token_id, 0, 1)
                           if t is not None and t != model.config.pad_token_id)
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        self.gen_eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self._stop_ids: dict[tuple[str, ...], torch.Tensor] = {}
        # The injection seam for everything that runs the network (tests wrap it to simulate out-of-memory):
        # forward_fn(input_ids, attention_mask=, position_ids=, cache=, use_cache=, skip_last=)
        #   -> (hidden [B, T, d], cache); see `_base_forward`.
        self.forward_fn: Forward = self._base_forward
        # GPT-2 (the ladder): the last block runs only where log-likelihoods are scored (`gpt2.finish_last_block`)
        self.partial_last = gpt2.supports_partial_last(self.config, self._base)
        self._check_head()

    @property
    def config(self):
        return self._model.config

    def _base_forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                      skip_last=False):
        """The base model (no head) -> (last hidden state [B, T, d], cache). `skip_last`: stop before the last block
        and return that block's input instead (see `gpt2.finish_last_block`)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                  self._cache_kwarg: cache, "use_cache": use_cache}
        if not skip_last:
            out = self._base(**kwargs)
            return out.last_hidden_state, out.get(self._cache_kwarg) if use_cache else None
        return gpt2.forward_before_last_block(self._base, **kwargs), cache

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on selected hidden states [K, d] -> float32 logits [K, V]."""
        logits = self._head(hidden).float()
        if cap := getattr(self.config, "final_logit_softcapping", None):
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.inference_mode()
    def _check_head(self) -> None:
        """Once, on eight tokens: the head on the base model's last hidden state must reproduce the model's logits
        (true for GPT-2, GPT-NeoX, Llama-style models), and the cached path must reproduce a full pass; refuse the
        model otherwise. The shortened last GPT-2 block is used only if it reproduces the real one."""
        # relative error allowed between two ways of computing the same thing: float32 rounding, or bfloat16's
        # (a gross error, such as an ignored cache, is of order 1)
        tolerance = 1e-4 if next(self._model.parameters()).dtype == torch.float32 else 5e-2

        def close(a, b):
            return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-6)) < tolerance

        ids = (torch.arange(8, device=self._device)[None] * 7 + 3) % min(len(self.tokenizer), 50)  # [1, 8]
        ids[ids == self.config.pad_token_id] = self.pad_id
        reference = self._model(input_ids=ids).logits[0].float()
        hidden, _ = self._base_forward(ids)
        if not close(self.logits(hidden[0]), reference):
            raise NotImplementedError(f"{type(self._model).__name__}: logits are not the output head applied to "
                                      "the last hidden state; use lm-eval's `hf` model instead")
        # the cached path as the backend drives it: 5 tokens, then 3 more against an in-place cache with a mask and
        # explicit positions, must give the hidden states of one pass over all 8
        n_layers = self.config.get_text_config().num_hidden_layers
        cache = Cache(layers=[InPlaceLayer(8) for _ in range(n_layers)])
        self._base_forward(ids[:, :5], cache=cache, use_cache=True)
        rest, _ = self._base_forward(ids[:, 5:], attention_mask=torch.ones_like(ids), cache=cache, use_cache=True,
                                     position_ids=torch.arange(5, 8, device=self._device)[None])
        if not close(rest[0], hidden[0, 5:]):
            raise NotImplementedError(f"{type(self._model).__name__}: continuing from a key/value cache does not "
                                      "reproduce the full forward pass with this `transformers` version")
        if self.partial_last:  # and the shortened last block must agree with the real one, else it is not used
            kv = [hidden.new_empty(gpt2.kv_shape(self._base, 1, 8)) for _ in range(2)]
            inner, _ = self._base_forward(ids, skip_last=True)
            one = torch.ones(1, dtype=torch.long, device=self._device)
            final = gpt2.finish_last_block(self._base, inner, *kv,
                                           torch.zeros(1, 0, dtype=torch.bool, device=self._device), 0 * one, 8 * one)
            self.partial_last = close(final[0], hidden[0])

    def _rows_for(self, padded_len: int, budget_scale: int = 1) -> int:
        """Rows per batch for sequences of `padded_len` tokens: the fixed batch size, or the token budget."""
        if self._batch_size == "auto":
            rows = max(1, budget_scale * self.batch_tokens // max(1, padded_len))
        else:
            rows = self._batch_size
        for cap in (self.max_batch_size, self.max_rows):
            if cap:
                rows = min(rows, cap)
        return rows

    def _in_batches(self, items: list, length: Callable[[object], int], run: Callable[[list], None],
                    budget_scale: int = 1) -> None:
        """Run `run` over consecutive batches of `items` (best sorted longest first); on CUDA out-of-memory halve the
        batch and retry it (never below one row). The smaller size is kept for the rest of the evaluation."""
        start = 0
        while start < len(items):
            rows = self._rows_for(length(items[start]), budget_scale)
            rows = self._rows_for(max(length(item) for item in items[start:start + rows]), budget_scale)
            batch = items[start:start + rows]
            try:
                run(batch)
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise
                self.max_rows = len(batch) // 2
                log.warning("out of memory with %d rows per batch; retrying with %d", len(batch), self.max_rows)
                if self._device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            start += len(batch)

    @torch.inference_mode()
    def score(self, rows: list[tuple[tuple[int, ...], int]]) -> list[tuple[float, bool]]:
        """(tokens, n scored) -> (sum of log p of the scored tokens, all of them greedy), for distinct rows.

        The input is tokens[:-1]; the last n tokens are the targets, predicted at input positions len-1-n..len-2.
        """
        n_rows = len(rows)
        if n_rows == 0:
            return []
        lengths = np.array([len(t) - 1 for t, _ in rows])  # input lengths
        n_scored = np.array([c for _, c in rows])
        shareable = lengths - n_scored  # input tokens before the first scored position
        order = sorted(range(n_rows), key=lambda i: rows[i][0])
        groups = plan_prefix_groups(shared_prefixes(rows, order, shareable), self.min_shared_prefix)

        outputs = []  # (row indices [B], log-likelihood [B] on device, misses [B] on device)
        grouped = np.zeros(n_rows, dtype=bool)
        plan = []  # (prefix tokens, member rows)
        for lo, hi, p in groups:
            members = [order[k] for k in range(lo, hi + 1)]
            grouped[members] = True
            plan.append((rows[members[0]][0][:p], members))
        plain = sorted(np.flatnonzero(~grouped).tolist(), key=lambda i: -lengths[i])
        # what the last call did (for tests and benchmarks): input tokens of all rows, and those actually run
        self.stats = {"rows": n_rows, "grouped_rows": int(grouped.sum()), "groups": len(plan),
                      "tokens": int(lengths.sum()),
                      "tokens_run": int(lengths.sum()) - sum((len(m) - 1) * len(prefix) for prefix, m in plan)}

        scratch = Scratch()

        def run_plain(batch: list[int]) -> None:
            ids, _ = pad_right([rows[i][0][:-1] for i in batch], self.pad_id)  # [B, T]
            start = (lengths - n_scored)[batch]
            if not self.partial_last:
                hidden, _ = self.forward_fn(ids.to(self._device))  # [B, T, d]
                outputs.append(self._score_hidden(hidden, batch, rows, start))
                return
            hidden, _ = self.forward_fn(ids.to(self._device), skip_last=True)  # the last block's input
            shape = gpt2.kv_shape(self._base, len(batch), ids.shape[1])
            final = gpt2.finish_last_block(
                self._base, hidden, scratch.get("k", shape, hidden), scratch.get("v", shape, hidden),
                torch.zeros(len(batch), 0, dtype=torch.bool, device=self._device),
                torch.from_numpy(start).to(self._device), torch.from_numpy(n_scored[batch]).to(self._device))
            outputs.append(self._score_hidden(final, batch, rows, np.zeros(len(batch), dtype=np.int64)))

        self._in_batches(plain, lambda i: lengths[i], run_plain)
        for wave in self._waves(plan):
            self._score_wave(wave, rows, lengths, n_scored, outputs, scratch)

        scores = [None] * n_rows
        if outputs:
            index = torch.cat([torch.as_tensor(o[0]) for o in outputs]).tolist()
            logprob = torch.cat([o[1] for o in outputs]).cpu().tolist()
            greedy = (torch.cat([o[2] for o in outputs]) == 0).cpu().tolist()
            for i, lp, g in zip(index, logprob, greedy):
                scores[i] = (lp, g)
        return scores

    def _score_hidden(self, hidden, batch, rows, start):
        """Log-likelihood sums and greedy misses for `batch` from its final hidden states [B, T, d].

        Row b's n scored positions are start[b] .. start[b] + n - 1 of `hidden`; its targets are its last n tokens.
        The head runs on those positions only, in chunks.
        """
        n = np.array([rows[i][1] for i in batch])
        total = int(n.sum())
        row_of = np.repeat(np.arange(len(batch)), n)  # [K] which row each scored position belongs to
        pos = np.repeat(start - np.cumsum(n) + n, n) + np.arange(total)  # [K] position within the row
        targets = np.concatenate([rows[i][0][-c:] for i, c in zip(batch, n)])  # [K]
        row_t = torch.from_numpy(row_of).to(self._device)
        pos_t = torch.from_numpy(pos).to(self._device)
        tgt_t = torch.from_numpy(targets).to(self._device)
        logprob = torch.zeros(len(batch), dtype=torch.float64, device=self._device)
        misses = torch.zeros(len(batch), dtype=torch.int64, device=self._device)
        chunk = max(1, HEAD_ELEMENTS // self._head.out_features)
        for s in range(0, total, chunk):
            r, t, y = row_t[s:s + chunk], pos_t[s:s + chunk], tgt_t[s:s + chunk]
            logp = self.logits(hidden[r, t]).log_softmax(-1)  # [k, V]
            logprob.index_add_(0, r, logp.gather(1, y[:, None]).squeeze(1).double())
            misses.index_add_(0, r, (logp.argmax(-1) != y).long())
        return np.asarray(batch), logprob, misses

    def _kv_bytes_per_token(self) -> int:
        p = next(self._model.parameters())
        cfg = self.config.get_text_config()
        return 2 * cfg.num_hidden_layers * cfg.hidden_size * p.element_size()

    def _waves(self, plan: list) -> list[list]:
        """Split prefix groups into waves whose cached keys/values fit the prefix-cache budget."""
        budget = max(1, self.prefix_cache_bytes // self._kv_bytes_per_token())  # tokens
        waves, current, used = [], [], 0
        for prefix, members in plan:
            if current and used + len(prefix) > budget:
                waves.append(current)
                current, used = [], 0
            current.append((prefix, members))
            used += len(prefix)
        return waves + ([current] if current else [])

    def _score_wave(self, wave, rows, lengths, n_scored, outputs, scratch: Scratch) -> None:
        """Run each group's prefix once (its key/value cache kept per layer in [G, H, P, dh] buffers), then every
        member's suffix against the cache of its group, with positions continuing after the prefix."""
        prefixes = sorted(range(len(wave)), key=lambda g: -len(wave[g][0]))
        p_len = torch.tensor([len(prefix) for prefix, _ in wave])
        buffers: list[list[torch.Tensor]] = []  # per layer: [keys, values], each [G, H, Pmax, dh]

        def run_prefix(batch: list[int]) -> None:
            ids, _ = pad_right([wave[g][0] for g in batch], self.pad_id)
            _, cache = self.forward_fn(ids.to(self._device), use_cache=True)
            index = torch.tensor(batch, device=self._device)
            for layer_idx, layer in enumerate(cache.layers):
                if not buffers or len(buffers) <= layer_idx:
                    shape = (len(wave), layer.keys.shape[1], int(p_len.max()), layer.keys.shape[3])
                    buffers.append([layer.keys.new_zeros(shape), layer.values.new_zeros(shape)])
                k, v = buffers[layer_idx]
                k[index, :, : layer.keys.shape[2]] = layer.keys
                v[index, :, : layer.values.shape[2]] = layer.values

        self._in_batches(prefixes, lambda g: len(wave[g][0]), run_prefix)

        group_of = {i: g for g, (_, members) in enumerate(wave) for i in members}
        # by group, then longest suffix first: a batch holds few groups, each copied once into its rows' cache
        members = sorted(group_of, key=lambda i: (group_of[i], -lengths[i]))

        def run_suffix(batch: list[int]) -> None:
            groups = [group_of[i] for i in batch]
            offsets = p_len[groups]  # [B] prefix length of each row's group
            ids, suffix_len = pad_right([rows[i][0][int(o):-1] for i, o in zip(batch, offsets)], self.pad_id)
            width, n_new = int(offsets.max()), ids.shape[1]
            starts = [0] + [b for b in range(1, len(batch)) if groups[b] != groups[b - 1]] + [len(batch)]
            keys, values = [], []
            for layer, (k_wave, v_wave) in enumerate(buffers):  # [G, H, Pmax, dh] -> [B, H, width + S, dh]
                k = scratch.get((layer, "k"), (len(batch), k_wave.shape[1], width + n_new, k_wave.shape[3]), k_wave)
                v = scratch.get((layer, "v"), (len(batch), v_wave.shape[1], width + n_new, v_wave.shape[3]), v_wave)
                for a, b in itertools.pairwise(starts):
                    k[a:b, :, :width] = k_wave[groups[a], :, :width]
                    v[a:b, :, :width] = v_wave[groups[a], :, :width]
                keys.append(k)
                values.append(v)
            cache = Cache(layers=[InPlaceLayer(width + n_new, k, v, width) for k, v in zip(keys, values)])
            mask = torch.cat([torch.arange(width)[None] < offsets[:, None],  # [B, width]: the group's prefix
                              torch.arange(n_new)[None] < torch.from_numpy(suffix_len)[:, None]], 1)
            # [B, S]; a padding position may pass the model's last one (a longer prefix than the longest suffix's)
            positions = (offsets[:, None] + torch.arange(n_new)[None]).clamp(max=self.max_length - 1)
            start = (lengths - n_scored)[batch] - offsets.numpy()  # first scored position within the suffix
            mask = mask.to(self._device)
            hidden, cache = self.forward_fn(ids.to(self._device), attention_mask=mask.long(),
                                            position_ids=positions.to(self._device), cache=cache, use_cache=True,
                                            skip_last=self.partial_last)
            if self.partial_last:  # the last layer's cache holds the prefix; the block itself never ran
                last = cache.layers[-1]
                hidden = gpt2.finish_last_block(self._base, hidden, last.buffer_k, last.buffer_v, mask[:, :width],
                                                torch.from_numpy(start).to(self._device),
                                                torch.from_numpy(n_scored[batch]).to(self._device))
                start = np.zeros(len(batch), dtype=np.int64)
            outputs.append(self._score_hidden(hidden, batch, rows, start))

        self._in_batches(members, lambda i: lengths[i] - len(wave[group_of[i]][0]), run_suffix)

    def _stop_token_ids(self, until: Sequence[str]) -> torch.Tensor:
        """Tokens whose text contains a stop string, plus the model's EOS ids: a row that emits one is finished.

        A stop string spread over several tokens is not caught here; such a row just runs on to max_gen_toks (or its
        next stop token), and the cut at the first stop string gives the same text either way."""
        key = tuple(until)
        if key not in self._stop_ids:
            vocab = len(self.tokenizer)
            texts = self.tokenizer.batch_decode([[t] for t in range(vocab)])
            ids = [t for t, text in enumerate(texts) if any(s and s in text for s in until)]
            self._stop_ids[key] = torch.tensor(sorted({*ids, *self.gen_eos_ids}), dtype=torch.long,
                                               device=self._device)
        return self._stop_ids[key]

    @torch.inference_mode()
    def generate(self, rows: list[list[int]], max_new: int, until: Sequence[str]) -> list[list[int]]:
        """Greedy continuations (token lists, cut after the first EOS) of `rows`, batched longest first.

        Prefill runs right-padded without a mask into a preallocated cache; each step then feeds one token per row
        at position len(row) + step, with the padding masked out of the cache."""
        stop_ids = self._stop_token_ids(until)
        eos_ids = torch.tensor(self.gen_eos_ids, dtype=torch.long, device=self._device)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out: list[list[int] | None] = [None] * len(rows)
        n_layers = self.config.get_text_config().num_hidden_layers
        scratch = Scratch()

        def run(batch: list[int]) -> None:
            ids, lengths = pad_right([rows[i] for i in batch], self.pad_id)  # [B, T]
            n_rows, width = ids.shape
            lengths_t = torch.from_numpy(lengths).to(self._device)
            cache = Cache(layers=[InPlaceLayer(width + max_new, scratch=scratch, key=i) for i in range(n_layers)])
            if not self.partial_last:
                hidden, _ = self.forward_fn(ids.to(self._device), cache=cache, use_cache=True)  # [B, T, d]
                last = hidden[torch.arange(n_rows, device=self._device), lengths_t - 1]  # [B, d]
            else:  # prefill: the last block only at each row's last position, its keys/values into the cache
                hidden, _ = self.forward_fn(ids.to(self._device), cache=cache, use_cache=True, skip_last=True)
                layer = cache.layers[-1]
                shape = gpt2.kv_shape(self._base, n_rows, width + max_new)
                layer.buffer_k, layer.buffer_v = scratch.get("k", shape, hidden), scratch.get("v", shape, hidden)
                last = gpt2.finish_last_block(
                    self._base, hidden, layer.buffer_k[:, :, :width], layer.buffer_v[:, :, :width],
                    torch.zeros(n_rows, 0, dtype=torch.bool, device=self._device), lengths_t - 1,
                    torch.ones_like(lengths_t))[:, 0]  # [B, d]
                layer.fill_to(width)
            mask = torch.ones(n_rows, width + max_new, dtype=torch.long, device=self._device)  # [B, T + new]
            mask[:, :width] = torch.arange(width, device=self._device)[None] < lengths_t[:, None]
            steps = []
            done = torch.zeros(n_rows, dtype=torch.bool, device=self._device)
            for step in range(max_new):
                token = self.logits(last).argmax(-1)  # [B]
                steps.append(token)
                done |= torch.isin(token, stop_ids)
                if step == max_new - 1 or bool(done.all()):
                    break
                hidden, _ = self.forward_fn(token[:, None], attention_mask=mask[:, :width + step + 1],
                                            position_ids=(lengths_t + step)[:, None], cache=cache, use_cache=True)
                last = hidden[:, -1]
            tokens = torch.stack(steps, 1)  # [B, steps]
            is_eos = torch.isin(tokens, eos_ids)
            # keep up to and including the first EOS (HF generate pads after it; decoding drops both)
            keep = (is_eos.long().cumsum(1) - is_eos.long()) == 0
            for i, toks, k in zip(batch, tokens.tolist(), keep.sum(1).tolist()):
                out[i] = toks[:k]

        # generation takes 4x the token budget: each decoding step costs a forward call whatever its batch size
        self._in_batches(order, lambda i: len(rows[i]) + max_new, run, budget_scale=4)
        return out
