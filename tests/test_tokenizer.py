from transformers import AutoTokenizer

from emergence.ladder.tokenizer import ALPHABET, build_char_tokenizer, encode_chars

TEXT = "Q: What is 123 plus 456?\nA: 579\n\nQ: What is 12 times 34?\nA:"


def test_round_trip_one_token_per_character():
    tok = build_char_tokenizer()
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert len(ids) == len(TEXT)
    assert tok.decode(ids) == TEXT


def test_saved_tokenizer_loads_with_autotokenizer(tmp_path):
    build_char_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.decode(tok.encode(TEXT, add_special_tokens=False)) == TEXT
    assert tok.pad_token == "<pad>" and tok.eos_token == "<|endoftext|>"
    assert len(tok) == len(ALPHABET) + 3


def test_unknown_characters_map_to_unk():
    tok = build_char_tokenizer()
    assert tok.encode("é", add_special_tokens=False) == [tok.unk_token_id]


def test_the_fast_encoder_gives_the_tokenizers_ids():
    text = ALPHABET + TEXT + "é\t\r€"  # every character, and characters outside the alphabet
    assert encode_chars(text) == build_char_tokenizer().encode(text, add_special_tokens=False)
