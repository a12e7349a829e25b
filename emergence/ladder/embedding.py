"""Digit tokens embedded as digit + place while the ladder trains.

The tokenizer gives a digit one token per place (`tokenizer.PLACES`: 4 x 10 tokens). Embedded freely, each of the
40 would learn alone; factored, the row of digit d at place p is `digit[d] + place[p]`, so what a token teaches
about its digit or its place reaches the other 39 (in probes here, width 64: addition left its loss plateau in 5
of 6 seeds against 2 of 6 with free rows, docs/benchmarks.md). The factors are a parametrization of the tied
embedding matrix, so the model stays a stock GPT-NeoX: `plain_copy` writes the factored rows out for saving.
"""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from emergence.ladder.tokenizer import DIGIT_PLACE_IDS, DIGITS, PLACES


class DigitPlaceEmbedding(torch.nn.Module):
    """Parametrization of an embedding matrix [vocab, width] whose digit-token rows are digit + place."""

    def __init__(self, width: int, std: float = 0.02):
        super().__init__()
        self.digit = torch.nn.Parameter(torch.empty(len(DIGITS), width).normal_(0.0, std))  # [10, width]
        self.place = torch.nn.Parameter(torch.empty(len(PLACES), width).normal_(0.0, std))  # [4, width]
        # token ids in the order of the factored rows below: place-major, then digit
        self.register_buffer("rows", torch.tensor(DIGIT_PLACE_IDS).reshape(-1), persistent=False)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        factored = (self.place[:, None, :] + self.digit[None, :, :]).reshape(-1, weight.shape[1])  # [40, width]
        return weight.index_copy(0, self.rows, factored)


def factor_digit_embeddings(model: torch.nn.Module) -> torch.nn.Module:
    """Parametrize `model`'s tied input and output embeddings with one `DigitPlaceEmbedding` (in place)."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head.weight is not embedding.weight:
        raise ValueError("factored digit embeddings need tied input and output embeddings (tie_word_embeddings)")
    factors = DigitPlaceEmbedding(embedding.weight.shape[1]).to(embedding.weight.device)
    for module in (embedding, head):  # both hold the same Parameter: both see the same factored matrix
        parametrize.register_parametrization(module, "weight", factors)
    return model


def plain_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A stock copy of a model from `factor_digit_embeddings`: the factored matrix written out, tied again.
    (Not `remove_parametrizations` on a deep copy: the copy shares the parametrized class, and removing the
    parametrization there would remove it from `model` too.)"""
    with torch.no_grad():
        weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())  # digit rows factored
    state = {name: tensor for name, tensor in model.state_dict().items() if ".parametrizations." not in name}
    with torch.random.fork_rng(devices=[]):  # its random init, overwritten below, leaves the run's RNG alone
        plain = type(model)(model.config).to(weight.device)
    plain.get_input_embeddings().weight = weight
    plain.tie_weights()
    missing, unexpected = plain.load_state_dict(state, strict=False)
    tied = {name for name, param in plain.named_parameters(remove_duplicate=False) if param is weight}
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"plain_copy: state dict mismatch: missing {missing}, unexpected {unexpected}")
    return plain.train(model.training)
