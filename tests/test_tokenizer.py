from transformers import AutoTokenizer

from emergence.ladder.tokenizer import ALPHABET, DIGIT_PLACE_IDS, PLACES, build_tokenizer, encode_text

TEXT = "Q: What is 123 plus 456?\nA: 579\n\nQ: What is 12 times 34?\nA: 7 -408"


def test_round_trip_one_token_per_character():
    tok = build_tokenizer()
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert len(ids) == len(TEXT)
    assert tok.decode(ids) == TEXT


def test_a_digit_token_names_its_place_in_the_number():
    tok = build_tokenizer()
    ids = tok.encode("A: 579 7 -408 12", add_special_tokens=False)
    first, middle, last, lone = (dict(zip(range(10), DIGIT_PLACE_IDS[PLACES.index(p)]))
                                 for p in ("first", "middle", "last", "lone"))
    digits = [i for i in ids if any(i in row for row in DIGIT_PLACE_IDS)]
    assert digits == [first[5], middle[7], last[9], lone[7], first[4], middle[0], last[8], first[1], last[2]]
    assert len({i for row in DIGIT_PLACE_IDS for i in row}) == 40  # 10 digits at 4 places, all distinct
    assert [tok.decode([i]) for i in digits] == list("579740812")


def test_saved_tokenizer_loads_with_autotokenizer(tmp_path):
    build_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.decode(tok.encode(TEXT, add_special_tokens=False)) == TEXT
    assert tok.pad_token == "<pad>" and tok.eos_token == "<|endoftext|>"
    assert len(tok) == len(ALPHABET) + 3 + 30  # specials, characters, digits at their 3 other places


def test_unknown_characters_map_to_unk():
    tok = build_tokenizer()
    assert tok.encode("é", add_special_tokens=False) == [tok.unk_token_id]


def test_the_fast_encoder_gives_the_tokenizers_ids():
    text = ALPHABET + TEXT + "é\t\r€ 0 00 000 1234567890"  # every character, others outside the alphabet, numbers
    assert encode_text(text) == build_tokenizer().encode(text, add_special_tokens=False)
