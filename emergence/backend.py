"""A faster lm-eval backend for causal Hugging Face models: lm-eval's tasks, prompts and metrics, without HFLM's
per-request overhead.

Stock `HFLM` pays, per request, for a tensor built in Python, a log-softmax over the whole vocabulary at every
position and a host synchronisation; on a GPU that is 11-23x below the throughput of a plain batched forward pass
of the same sequences (issue 6). This backend keeps HFLM's semantics exactly (same tokenisation through
`TemplateLM._encode_pair`, same left truncation, greedy flags from the same argmax, the same generations) and
changes only how the work is done:

- all strings are tokenised in one batched tokenizer call; identical requests are scored once;
- requests that share a long token prefix (few-shot exemplars, the context of multiple-choice options) are
  grouped: the prefix runs once and its key/value cache serves every member, which runs only its own suffix;
- rows are sorted by length and batched with right padding (no attention mask in the plain causal case); the LM
  head runs only at the scored positions, and the log-likelihood sum and the greedy flag come from the same
  logits through vectorised gathers and `index_add_`; results stay on the device until one transfer at the end;
- GPT-2 models (the ladder) run their last block only where a log-likelihood is scored (or, in generation, at each
  prompt's last position): every other position needs only its keys and values there;
- activation modules that `transformers` itself documents as numerically equivalent to a fused kernel
  (`gelu_new`, `gelu_fast` -> `gelu_pytorch_tanh`) are swapped for it: the same function, one kernel;
- batch size is a token budget by default (`batch_size="auto"`) and halves on CUDA out-of-memory, retrying the
  batch (never below one row), with a warning in the log.

Log-likelihoods are summed in float64 from float32 log-softmax values even when the model runs in bfloat16 (HFLM
takes the log-softmax in the model's dtype), so on a GPU the values are the more accurate of the two.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, resolve_max_length
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from transformers.cache_utils import Cache, DynamicLayer

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048  # HFLM's fallback when neither config nor tokenizer gives one
# A token budget per batch: rows x padded length. On CPU small batches stay in cache; on a GPU large ones fill it.
BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}
PREFIX_CACHE_BYTES = {"cpu": 256 << 20, "cuda": 2 << 30}  # key/value memory of the prefixes held at once
HEAD_ELEMENTS = 1 << 24  # scored positions x vocabulary per LM-head chunk (64 MiB of float32 logits)
MIN_SHARED_PREFIX = 16  # tokens; shorter common prefixes are recomputed rather than cached


Forward = Callable[..., tuple[torch.Tensor, object]]


def _fuse_activations(model: torch.nn.Module) -> int:
    """Replace `NewGELUActivation`/`FastGELUActivation` modules with the fused `GELUTanh` (same formula, one kernel;
    on CPU the unfused form is half of a ladder model's forward time). Returns how many were replaced."""
    from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(module, name, GELUTanh())
                replaced += 1
    return replaced


def plan_prefix_groups(shared: np.ndarray, min_prefix: int) -> list[tuple[int, int, int]]:
    """Choose which runs of lexicographically sorted rows share a cached prefix.

    `shared[k]` is how many leading tokens rows k and k+1 may share (their common prefix, capped so that no
    scored position falls inside it). A run of rows [lo, hi] can share min(shared[lo:hi]) tokens, saving
    (hi - lo) x that many token computations; splitting the run where that minimum is reached may save more (an
    instruction shared by all prompts vs. the whole context shared by the options of one question). The best
    choice is found bottom-up over this interval tree. Returns (lo, hi, prefix length) per group, hi > lo.
    """
    if len(shared) == 0:
        return []
    best: dict[tuple[int, int], tuple[int, list]] = {}
    stack = [(0, len(shared), False)]  # rows lo..hi inclusive; shared[lo:hi] links them
    while stack:
        lo, hi, children_done = stack.pop()
        if lo == hi:
            best[lo, hi] = (0, [])
            continue
        links = shared[lo:hi]
        p = int(links.min())
        cuts = lo + np.flatnonzero(links == p)  # split between row k and k+1 at each minimum
        subruns = list(zip([lo, *(cuts + 1).tolist()], [*cuts.tolist(), hi]))
        if not children_done:
            stack.append((lo, hi, True))
            stack.extend((a, b, False) for a, b in subruns)
            continue
        split = [best.pop(s) for s in subruns]
        split_saving = sum(s for s, _ in split)
        whole_saving = (hi - lo) * p if p >= min_prefix else 0
        if whole_saving > 0 and whole_saving >= split_saving:
            best[lo, hi] = (whole_saving, [(lo, hi, p)])
        else:
            best[lo, hi] = (split_saving, [g for _, groups in split for g in groups])
    return best[0, len(shared)][1]


class _Scratch:
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


class _InPlaceLayer(DynamicLayer):
    """One layer's keys/values in a preallocated buffer [B, H, capacity, dh]: each forward writes after the
    `filled` positions in place, where the stock `DynamicLayer` concatenates (a copy of the whole cache per layer
    per call, which dominates a small model's time on CPU). Without buffers given, they come from `scratch` at the
    first update, keyed by `key`."""

    def __init__(self, capacity: int, keys: torch.Tensor | None = None, values: torch.Tensor | None = None,
                 filled: int = 0, scratch: _Scratch | None = None, key: object = None) -> None:
        super().__init__()
        self.capacity, self.buffer_k, self.buffer_v, self.filled = capacity, keys, values, filled
        self.scratch, self.key = scratch or _Scratch(), key
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


class _Capture(torch.nn.Module):
    """Stands in for a model's last block: keeps the block's input and computes nothing."""

    def forward(self, hidden_states, *args, **kwargs):
        self.hidden = hidden_states
        return hidden_states


def _pad_right(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, np.ndarray]:
    """Token lists -> (ids [B, T] right-padded, lengths [B])."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    ids = np.full((len(rows), int(lengths.max())), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return torch.from_numpy(ids), lengths


@register_model("emergence")
class FastLM(TemplateLM):
    """lm-eval model `emergence`: a causal HF model evaluated with HFLM's semantics and without its overhead.

    `lm_eval --model emergence --model_args pretrained=<dir>` or `simple_evaluate(model=FastLM(...))`; to serve many
    evaluations from one load, `FastLM.from_model(model, tokenizer)`.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        tokenizer=None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | str = "auto",
        max_length: int | None = None,
        max_batch_size: int | None = None,
        fuse_activations: bool = True,
        *,
        model=None,
        **unused,
    ) -> None:
        """`pretrained`: a local model directory (or pass a loaded `model=`); `tokenizer`: a directory or a loaded
        tokenizer (default: `pretrained`); `device`: "cuda" when available, else "cpu"; `dtype`: float32 on CPU,
        bfloat16 on CUDA; `batch_size`: rows per batch, or "auto" for a token budget per batch; `max_length`: the
        context length (default: the model config's, as HFLM); `max_batch_size`: a cap on rows per batch."""
        super().__init__()
        import transformers

        if unused:
            log.warning("FastLM ignores arguments %s", sorted(unused))
        if (pretrained is None) == (model is None):
            raise ValueError("pass exactly one of `pretrained` (a model directory) and `model` (a loaded model)")
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None or dtype == "auto":
            dtype = torch.bfloat16 if self._device.type == "cuda" else torch.float32
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if model is None:
            model = transformers.AutoModelForCausalLM.from_pretrained(pretrained, dtype=dtype)
            tokenizer = tokenizer or pretrained
        if tokenizer is None:
            raise ValueError("a loaded `model` needs its `tokenizer`")
        if isinstance(tokenizer, str):
            tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer, use_fast=True)
        if model.config.is_encoder_decoder:
            raise NotImplementedError("FastLM evaluates causal (decoder-only) models only")
        self._model = model.to(device=self._device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        if fuse_activations:
            _fuse_activations(self._model)
        self._base = self._model.base_model
        # `transformers` 5.24 names the key/value cache `cache`, earlier 5.x `past_key_values`
        self._cache_kwarg = "cache" if "cache" in inspect.signature(self._base.forward).parameters else \
            "past_key_values"
        self._head = self._model.get_output_embeddings()
        self._max_length = max_length or resolve_max_length(model.config, tokenizer, default=DEFAULT_MAX_LENGTH)
        self._batch_size = "auto" if str(batch_size).startswith("auto") else int(batch_size)  # "auto:N" as auto
        self.max_batch_size = max_batch_size
        self.max_rows: int | None = None  # lowered by out-of-memory halving, kept for later batches
        self.batch_tokens = BATCH_TOKENS.get(self._device.type, BATCH_TOKENS["cpu"])
        self.prefix_cache_bytes = PREFIX_CACHE_BYTES.get(self._device.type, PREFIX_CACHE_BYTES["cpu"])
        self.min_shared_prefix = MIN_SHARED_PREFIX
        self.stats: dict[str, int] = {}  # set by each scoring call, see `_score`
        # right padding is never attended to; any id other than the model's pad id also keeps `transformers` from
        # warning that a padded batch comes without an attention mask
        self.pad_id = next(t for t in (tokenizer.eos_token_id, tokenizer.bos_token_id, 0, 1)
                           if t is not None and t != model.config.pad_token_id)
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        self.gen_eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self._bos_text = tokenizer.decode(self.prefix_token_id)
        self._stop_ids: dict[tuple[str, ...], torch.Tensor] = {}
        # The injection seam for everything that runs the network (tests wrap it to simulate out-of-memory):
        # forward_fn(input_ids, attention_mask=, position_ids=, cache=, use_cache=, skip_last=)
        #   -> (hidden [B, T, d], cache); see `_base_forward`.
        self.forward_fn: Forward = self._base_forward
        cfg = self.config
        # GPT-2 (the ladder): the last block runs only where log-likelihoods are scored (`_finish_last_block`)
        self._partial_last = (cfg.model_type == "gpt2" and not cfg.add_cross_attention
                              and not cfg.reorder_and_upcast_attn and hasattr(self._base, "h"))
        self._check_head()

    @classmethod
    def from_model(cls, model, tokenizer, **kwargs) -> FastLM:
        """Wrap an already loaded model and tokenizer (one load serves many evaluations). The model is moved to
        `device`/`dtype` if needed and its GELU modules fused in place (pass `fuse_activations=False` to keep)."""
        return cls(model=model, tokenizer=tokenizer, **kwargs)

    # --- lm-eval's LM interface ---------------------------------------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def config(self):
        return self._model.config

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return 256

    @property
    def batch_size(self):
        return self._batch_size

    @property
    def device(self):
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def get_model_info(self) -> dict:
        return {"model_num_parameters": sum(p.numel() for p in self._model.parameters()),
                "model_dtype": str(next(self._model.parameters()).dtype)}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs) -> list[int]:
        """HFLM's encoding: the tokenizer's default special tokens, none if the string already starts with BOS."""
        if add_special_tokens is None:
            add_special_tokens = not string.startswith(self._bos_text)
        ids = self.tokenizer.encode(string, add_special_tokens=add_special_tokens)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def _encode_many(self, strings: Sequence[str], add_special_tokens: bool | None = None) -> dict[str, list[int]]:
        """{string: tok_encode(string)} for distinct strings, in one tokenizer call per special-token setting."""
        unique = list(dict.fromkeys(strings))
        if add_special_tokens is not None:
            flags = {add_special_tokens: unique}
        else:
            flags = defaultdict(list)
            for s in unique:
                flags[not s.startswith(self._bos_text)].append(s)
        # A fast tokenizer with no truncation or padding configured: its Rust core gives the same ids without the
        # per-string Python conversion of `tokenizer(...)` (a quarter of a ladder model's evaluation time on CPU).
        core = getattr(self.tokenizer, "_tokenizer", None) if getattr(self.tokenizer, "is_fast", False) else None
        direct = core is not None and core.truncation is None and core.padding is None
        out = {}
        for flag, group in flags.items():
            if group and direct:
                encode = getattr(core, "encode_batch_fast", core.encode_batch)
                out.update(zip(group, (e.ids for e in encode(group, add_special_tokens=flag))))
            elif group:
                out.update(zip(group, self.tokenizer(group, add_special_tokens=flag)["input_ids"]))
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """HFLM's (context, continuation) split, tokenised in one pass: trailing context whitespace moves into the
        continuation; an empty context becomes the prefix token (BOS, else EOS)."""
        pairs = [req.args for req in requests]
        split = []
        for context, continuation in pairs:
            stripped = context.rstrip()
            split.append((stripped, context[len(stripped):] + continuation))
        enc = self._encode_many([c for c, _ in split if c] + [c + x for c, x in split if c])
        empty = self._encode_many([x for c, x in pairs if not c], add_special_tokens=False)
        new_reqs = []
        for (context, continuation), (ctx, whole) in zip(pairs, split):
            if context:
                context_enc = enc[ctx] if ctx else []
                continuation_enc = enc[ctx + whole][len(context_enc):]
            else:
                continuation_enc = empty[continuation]
                if continuation_enc[0] != self.prefix_token_id:
                    context_enc = [self.prefix_token_id]
                else:
                    context_enc, continuation_enc = continuation_enc[:1], continuation_enc[1:]
            new_reqs.append(((context, continuation), context_enc, continuation_enc))
        return self._loglikelihood_tokens(new_reqs)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """Score (request, context tokens, continuation tokens) triples; HFLM's truncation: the last max_length+1
        tokens of context+continuation, the last one only as a target."""
        keys = []
        for _, context_enc, continuation_enc in requests:
            if not context_enc or not continuation_enc:
                raise ValueError("a log-likelihood request needs non-empty context and continuation tokens")
            if len(continuation_enc) > self.max_length:
                raise ValueError(f"continuation of {len(continuation_enc)} tokens exceeds max_length {self.max_length}")
            keys.append((tuple((context_enc + continuation_enc)[-(self.max_length + 1):]), len(continuation_enc)))
        index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        scores = self._score(list(index))
        results = [scores[index[key]] for key in keys]
        for (request, _, _), answer in zip(requests, results):
            if request is not None:
                self.cache_hook.add_partial("loglikelihood", request, answer)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Whole-document log-likelihood in HFLM's disjoint rolling windows of max_length tokens (each token
        predicted once, the first from the prefix token)."""
        strings = [req.args[0] for req in requests]
        enc = self._encode_many(strings)
        windows, owner = [], []
        for i, s in enumerate(strings):
            for ctx, cont in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=enc[s], prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1)):
                windows.append((None, ctx, cont))
                owner.append(i)
        totals = [0.0] * len(strings)
        for i, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows)):
            totals[i] += logprob
        for s, total in zip(strings, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", (s,), total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy generation as HFLM: contexts truncated from the left to max_length - max_gen_toks tokens, at most
        max_gen_toks new tokens, stop at the model's EOS, the text cut at the first stop string."""
        results: list[str | None] = [None] * len(requests)
        by_kwargs = defaultdict(list)
        for i, req in enumerate(requests):
            by_kwargs[json.dumps(req.args[1], sort_keys=True, default=str)].append(i)
        for indices in by_kwargs.values():
            kwargs = normalize_gen_kwargs(requests[indices[0]].args[1], self.max_gen_toks)
            if kwargs.get("do_sample"):
                raise NotImplementedError("FastLM generates greedily only (do_sample=False)")
            until = handle_stop_sequences(kwargs.pop("until", None), eos=self.tok_decode(self.eot_token_id, False))
            max_new = kwargs.pop("max_gen_toks")
            max_ctx = self.max_length - max_new
            if max_ctx <= 0:
                raise ValueError(f"max_gen_toks {max_new} leaves no context within max_length {self.max_length}")
            contexts = [requests[i].args[0] for i in indices]
            enc = self._encode_many(contexts)
            rows = [enc[c][-max_ctx:] or [self.prefix_token_id] for c in contexts]  # an empty context: BOS
            generated = self._generate(rows, max_new, until)
            for i, tokens in zip(indices, generated):
                text = self.tok_decode(tokens)
                for stop in until:
                    if stop:
                        text = text.split(stop)[0]
                results[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return results

    # --- running the network ------------------------------------------------------------------------------------
    def _base_forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                      skip_last=False):
        """The base model (no head) -> (last hidden state [B, T, d], cache). `skip_last`: stop before the last block
        and return that block's input instead (see `_finish_last_block`)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                  self._cache_kwarg: cache, "use_cache": use_cache}
        if not skip_last:
            out = self._base(**kwargs)
            return out.last_hidden_state, out.get(self._cache_kwarg) if use_cache else None
        blocks, capture = self._base.h, _Capture()
        last, blocks[-1] = blocks[-1], capture
        try:
            self._base(**kwargs)
        finally:
            blocks[-1] = last
        return capture.hidden, cache

    def _finish_last_block(self, hidden, keys, values, prefix_valid, start, count):
        """The last GPT-2 block on the scored windows only: the log-likelihood needs the final hidden state at a
        few positions per row, so every other position needs only its keys and values there (in a 2-layer ladder
        model that is 40% of the forward pass saved, in a 1-layer one 70%). Same arithmetic as `GPT2Block`.

        hidden [B, S, d]: the block's input; keys/values [B, H, W + S, dh]: buffers whose first W slots hold a cached
        prefix (W may be 0), valid where prefix_valid [B, W]; start/count [B]: row b's scored positions are
        start[b] .. start[b] + count[b] - 1 of hidden. Returns the final hidden states of the windows [B, C, d].
        """
        block, base = self._base.h[-1], self._base
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

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
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
        if not close(self._logits(hidden[0]), reference):
            raise NotImplementedError(f"{type(self._model).__name__}: logits are not the output head applied to "
                                      "the last hidden state; use lm-eval's `hf` model instead")
        # the cached path as the backend drives it: 5 tokens, then 3 more against an in-place cache with a mask and
        # explicit positions, must give the hidden states of one pass over all 8
        n_layers = self.config.get_text_config().num_hidden_layers
        cache = Cache(layers=[_InPlaceLayer(8) for _ in range(n_layers)])
        self._base_forward(ids[:, :5], cache=cache, use_cache=True)
        rest, _ = self._base_forward(ids[:, 5:], attention_mask=torch.ones_like(ids), cache=cache, use_cache=True,
                                     position_ids=torch.arange(5, 8, device=self._device)[None])
        if not close(rest[0], hidden[0, 5:]):
            raise NotImplementedError(f"{type(self._model).__name__}: continuing from a key/value cache does not "
                                      "reproduce the full forward pass with this `transformers` version")
        if self._partial_last:  # and the shortened last block must agree with the real one, else it is not used
            attn = self._base.h[-1].attn
            kv = [hidden.new_empty(1, attn.num_heads, 8, attn.head_dim) for _ in range(2)]
            inner, _ = self._base_forward(ids, skip_last=True)
            one = torch.ones(1, dtype=torch.long, device=self._device)
            final = self._finish_last_block(inner, *kv, torch.zeros(1, 0, dtype=torch.bool, device=self._device),
                                            0 * one, 8 * one)
            self._partial_last = close(final[0], hidden[0])

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
    def _score(self, rows: list[tuple[tuple[int, ...], int]]) -> list[tuple[float, bool]]:
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
        shared = np.zeros(max(0, n_rows - 1), dtype=np.int64)
        if n_rows > 1:
            padded = np.full((n_rows, int(lengths.max()) + 1), -1, dtype=np.int64)
            for i, (tokens, _) in enumerate(rows):
                padded[i, : len(tokens)] = tokens
            a, b = padded[order[:-1]], padded[order[1:]]  # [N-1, T] neighbours in sorted order
            same = a == b
            common = np.where(same.all(1), same.shape[1], same.argmin(1))
            shared = np.minimum(common, np.minimum(shareable[order[:-1]], shareable[order[1:]]))
        groups = plan_prefix_groups(shared, self.min_shared_prefix)

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

        scratch = _Scratch()

        def run_plain(batch: list[int]) -> None:
            ids, _ = _pad_right([rows[i][0][:-1] for i in batch], self.pad_id)  # [B, T]
            start = (lengths - n_scored)[batch]
            if not self._partial_last:
                hidden, _ = self.forward_fn(ids.to(self._device))  # [B, T, d]
                outputs.append(self._score_hidden(hidden, batch, rows, start))
                return
            hidden, _ = self.forward_fn(ids.to(self._device), skip_last=True)  # the last block's input
            attn = self._base.h[-1].attn
            shape = (len(batch), attn.num_heads, ids.shape[1], attn.head_dim)
            final = self._finish_last_block(
                hidden, scratch.get("k", shape, hidden), scratch.get("v", shape, hidden),
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
            logp = self._logits(hidden[r, t]).log_softmax(-1)  # [k, V]
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

    def _score_wave(self, wave, rows, lengths, n_scored, outputs, scratch: _Scratch) -> None:
        """Run each group's prefix once (its key/value cache kept per layer in [G, H, P, dh] buffers), then every
        member's suffix against the cache of its group, with positions continuing after the prefix."""
        prefixes = sorted(range(len(wave)), key=lambda g: -len(wave[g][0]))
        p_len = torch.tensor([len(prefix) for prefix, _ in wave])
        buffers: list[list[torch.Tensor]] = []  # per layer: [keys, values], each [G, H, Pmax, dh]

        def run_prefix(batch: list[int]) -> None:
            ids, _ = _pad_right([wave[g][0] for g in batch], self.pad_id)
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
            ids, suffix_len = _pad_right([rows[i][0][int(o):-1] for i, o in zip(batch, offsets)], self.pad_id)
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
            cache = Cache(layers=[_InPlaceLayer(width + n_new, k, v, width) for k, v in zip(keys, values)])
            mask = torch.cat([torch.arange(width)[None] < offsets[:, None],  # [B, width]: the group's prefix
                              torch.arange(n_new)[None] < torch.from_numpy(suffix_len)[:, None]], 1)
            # [B, S]; a padding position may pass the model's last one (a longer prefix than the longest suffix's)
            positions = (offsets[:, None] + torch.arange(n_new)[None]).clamp(max=self.max_length - 1)
            start = (lengths - n_scored)[batch] - offsets.numpy()  # first scored position within the suffix
            mask = mask.to(self._device)
            hidden, cache = self.forward_fn(ids.to(self._device), attention_mask=mask.long(),
                                            position_ids=positions.to(self._device), cache=cache, use_cache=True,
                                            skip_last=self._partial_last)
            if self._partial_last:  # the last layer's cache holds the prefix; the block itself never ran
                last = cache.layers[-1]
                hidden = self._finish_last_block(hidden, last.buffer_k, last.buffer_v, mask[:, :width],
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
    def _generate(self, rows: list[list[int]], max_new: int, until: Sequence[str]) -> list[list[int]]:
        """Greedy continuations (token lists, cut after the first EOS) of `rows`, batched longest first.

        Prefill runs right-padded without a mask into a preallocated cache; each step then feeds one token per row
        at position len(row) + step, with the padding masked out of the cache."""
        stop_ids = self._stop_token_ids(until)
        eos_ids = torch.tensor(self.gen_eos_ids, dtype=torch.long, device=self._device)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out: list[list[int] | None] = [None] * len(rows)
        n_layers = self.config.get_text_config().num_hidden_layers
        scratch = _Scratch()

        def run(batch: list[int]) -> None:
            ids, lengths = _pad_right([rows[i] for i in batch], self.pad_id)  # [B, T]
            n_rows, width = ids.shape
            lengths_t = torch.from_numpy(lengths).to(self._device)
            cache = Cache(layers=[_InPlaceLayer(width + max_new, scratch=scratch, key=i) for i in range(n_layers)])
            if not self._partial_last:
                hidden, _ = self.forward_fn(ids.to(self._device), cache=cache, use_cache=True)  # [B, T, d]
                last = hidden[torch.arange(n_rows, device=self._device), lengths_t - 1]  # [B, d]
            else:  # prefill: the last block only at each row's last position, its keys/values into the cache
                hidden, _ = self.forward_fn(ids.to(self._device), cache=cache, use_cache=True, skip_last=True)
                attn, layer = self._base.h[-1].attn, cache.layers[-1]
                shape = (n_rows, attn.num_heads, width + max_new, attn.head_dim)
                layer.buffer_k, layer.buffer_v = scratch.get("k", shape, hidden), scratch.get("v", shape, hidden)
                last = self._finish_last_block(
                    hidden, layer.buffer_k[:, :, :width], layer.buffer_v[:, :, :width],
                    torch.zeros(n_rows, 0, dtype=torch.bool, device=self._device), lengths_t - 1,
                    torch.ones_like(lengths_t))[:, 0]  # [B, d]
                layer.fill_to(width)
            mask = torch.ones(n_rows, width + max_new, dtype=torch.long, device=self._device)  # [B, T + new]
            mask[:, :width] = torch.arange(width, device=self._device)[None] < lengths_t[:, None]
            steps = []
            done = torch.zeros(n_rows, dtype=torch.bool, device=self._device)
            for step in range(max_new):
                token = self._logits(last).argmax(-1)  # [B]
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
