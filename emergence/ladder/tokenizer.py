"""A character-level tokenizer saved as a `PreTrainedTokenizerFast`.

Character tokens make an L-digit answer exactly L tokens (plus its leading space), which is what the
p^L argument of Schaeffer et al. needs, and they load through `AutoTokenizer` like any hub tokenizer.
"""

import string

PAD, EOS, UNK = "<pad>", "<|endoftext|>", "<unk>"
# Printable ASCII plus newline: every character a prompt of the ladder's tasks can contain.
ALPHABET = "\n" + "".join(ch for ch in string.printable if ch not in "\t\n\r\x0b\x0c")
VOCAB = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *ALPHABET])}


def encode_chars(text: str) -> list[int]:
    """The ids `build_char_tokenizer().encode(text, add_special_tokens=False)` gives, by a dict lookup per
    character: the tokenizer's call costs ~0.1 ms, half a minute of the widest default run's corpus."""
    return [VOCAB.get(ch, VOCAB[UNK]) for ch in text]


def build_char_tokenizer():
    """Build the ladder's tokenizer (a `PreTrainedTokenizerFast`): one token per character, specials first."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # heavy; plans need only ALPHABET
    from transformers import PreTrainedTokenizerFast  # heavy, as tokenizers: the Snakefile plans runs without it

    core = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token=UNK))
    # Isolate every character (newline included) so WordLevel sees single characters.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()  # join characters back without separators
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )
