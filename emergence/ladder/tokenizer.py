"""The ladder's tokenizer: one token per character, except that a digit's token also says where in its number it
stands (a lone digit, or the first, a middle or the last digit of a longer number), saved as a
`PreTrainedTokenizerFast`.

An L-digit answer is still exactly L tokens (plus its leading space), which is what the p^L argument of Schaeffer
et al. needs. The place is what arithmetic routes by (the units digits of the operands make the answer's units
digit), and a model that sees it learned 2-digit addition in fewer tokens and more reliably in probes here
(docs/benchmarks.md, "Digits that know their place"); the model embeds a digit token as digit + place
(`embedding.DigitPlaceEmbedding`). A place is read from the text before a digit and the digit itself, except "last",
which a model writing a number commits to as it writes its final digit.
"""

import re
import string

PAD, EOS, UNK = "<pad>", "<|endoftext|>", "<unk>"
# Printable ASCII plus newline: every character a prompt of the ladder's tasks can contain.
ALPHABET = "\n" + "".join(ch for ch in string.printable if ch not in "\t\n\r\x0b\x0c")
DIGITS = "0123456789"
PLACES = ("lone", "first", "middle", "last")
WORD_END, CONTINUED = "</w>", "##"  # BPE's marks of a word's last and of a non-first piece
# Token strings as the BPE model names them: every number (a run of digits) is a word, every other character too.
_PLACE_PIECE = {"lone": "{}" + WORD_END, "first": "{}", "middle": CONTINUED + "{}",
                "last": CONTINUED + "{}" + WORD_END}
# A lone digit is its character's token; the digits at the other places follow the characters.
VOCAB = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *(ch + WORD_END for ch in ALPHABET),
                                         *(_PLACE_PIECE[place].format(d) for place in PLACES[1:] for d in DIGITS)])}
# DIGIT_PLACE_IDS[place][digit]: the token id of `digit` at `place` (PLACES order)
DIGIT_PLACE_IDS = [[VOCAB[_PLACE_PIECE[place].format(d)] for d in DIGITS] for place in PLACES]
_FIRST_IDS, _MIDDLE_IDS, _LAST_IDS = (DIGIT_PLACE_IDS[PLACES.index(place)] for place in ("first", "middle", "last"))
_CHAR_IDS = {ch: VOCAB[ch + WORD_END] for ch in ALPHABET}
_WORDS = re.compile(r"[0-9]+|[\s\S]")  # the pre-tokenizer's split: numbers whole, any other character alone


def encode_text(text: str) -> list[int]:
    """The ids `build_tokenizer().encode(text, add_special_tokens=False)` gives, in plain Python: the
    tokenizer's call costs ~0.1 ms, half a minute of the widest default run's corpus."""
    ids = []
    for word in _WORDS.findall(text):
        if len(word) == 1:  # any character, a lone digit included
            ids.append(_CHAR_IDS.get(word, VOCAB[UNK]))
            continue
        first, *middle, last = (int(d) for d in word)
        ids.append(_FIRST_IDS[first])
        ids.extend(_MIDDLE_IDS[d] for d in middle)
        ids.append(_LAST_IDS[last])
    return ids


def build_tokenizer():
    """Build the ladder's tokenizer (a `PreTrainedTokenizerFast`): a BPE model without merges, so every character
    is one token, whose word marks name a digit's place; specials first."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # heavy; plans need only VOCAB
    from transformers import PreTrainedTokenizerFast  # heavy, as tokenizers: the Snakefile plans runs without it

    core = Tokenizer(models.BPE(vocab=dict(VOCAB), merges=[], unk_token=UNK,
                                continuing_subword_prefix=CONTINUED, end_of_word_suffix=WORD_END))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(_WORDS.pattern), behavior="isolated")
    core.decoder = decoders.Sequence([decoders.Replace(CONTINUED, ""), decoders.Replace(WORD_END, ""),
                                      decoders.Fuse()])
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )
