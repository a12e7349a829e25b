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

Modules: `lm` (the lm-eval adapter, registered as `emergence`), `engine` (batching, scoring, generation), `prefix`
(which requests share a cached prefix), `kvcache` (cache buffers), `gpt2` (the shortened last block, fused GELU).
"""

from emergence.backend.lm import FastLM
from emergence.backend.prefix import plan_prefix_groups

__all__ = ["FastLM", "plan_prefix_groups"]
