"""The ladder trains with its digit tokens embedded as digit + place and saves a stock GPT-NeoX."""

import torch
from transformers import AutoModelForCausalLM

from emergence.ladder import plan
from emergence.ladder.embedding import factor_digit_embeddings, plain_copy
from emergence.ladder.tokenizer import DIGIT_PLACE_IDS, build_tokenizer, encode_text


def factored_model(width=16):
    torch.manual_seed(0)
    tok = build_tokenizer()
    model = plan.model_size(width, 64).build(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return factor_digit_embeddings(model)


def test_digit_rows_are_digit_plus_place_at_both_ends_of_the_tied_embedding():
    model = factored_model()
    factors = model.get_input_embeddings().parametrizations.weight[0]
    weight, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    for place, row in enumerate(DIGIT_PLACE_IDS):
        for digit, token in enumerate(row):
            assert torch.equal(weight[token], factors.place[place] + factors.digit[digit])
    assert torch.equal(weight, head)
    ids = torch.tensor([encode_text("\nQ: What is 36 plus 97?\nA: 133")])
    model(input_ids=ids, labels=ids).loss.backward()
    assert factors.digit.grad.abs().sum() > 0 and factors.place.grad.abs().sum() > 0


def test_the_plain_copy_saves_a_stock_model_with_the_same_outputs(tmp_path):
    model = factored_model()
    ids = torch.tensor([encode_text("\nQ: What is 36 plus 97?\nA: 133")])
    with torch.no_grad():
        torch.nn.init.normal_(model.get_input_embeddings().parametrizations.weight[0].place)  # not the init's
        expected = model(input_ids=ids).logits
    plain = plain_copy(model)
    assert not any(".parametrizations." in name for name, _ in plain.named_parameters())
    assert plain.get_output_embeddings().weight is plain.get_input_embeddings().weight
    plain.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, expected)
        assert torch.equal(loaded(input_ids=ids).logits, expected)
    assert model.get_input_embeddings().weight.shape == plain.get_input_embeddings().weight.shape  # model intact
