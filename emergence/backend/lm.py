"""The lm-eval adapter: lm-eval's `LM` interface (requests, HFLM's tokenisation and truncation) over the engine."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence

import torch
import transformers
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, resolve_max_length
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from emergence.backend import gpt2
from emergence.backend.engine import Engine

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048  # HFLM's fallback when neither config nor tokenizer gives one


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
            gpt2.fuse_activations(self._model)
        self._max_length = max_length or resolve_max_length(model.config, tokenizer, default=DEFAULT_MAX_LENGTH)
        self._batch_size = "auto" if str(batch_size).startswith("auto") else int(batch_size)  # "auto:N" as auto
        self._bos_text = tokenizer.decode(self.prefix_token_id)
        self.engine = Engine(self._model, tokenizer, batch_size=self._batch_size, max_batch_size=max_batch_size,
                             max_length=self._max_length)

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
        scores = self.engine.score(list(index))
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
            generated = self.engine.generate(rows, max_new, until)
            for i, tokens in zip(indices, generated):
                text = self.tok_decode(tokens)
                for stop in until:
                    if stop:
                        text = text.split(stop)[0]
                results[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return results
