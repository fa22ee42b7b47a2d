"""Vocabulary and tokenization, shared by training, evaluation and serving."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from functools import cache

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)


@cache
def _tokenizer():
    """Words, numbers and simple contractions; punctuation dropped. A regexp tokenizer needs no nltk data download,
    and matches how the Karpathy split's "tokens" fields were made. Imported on first use: nltk takes seconds to
    import, and only training and BLEU tokenise text."""
    from nltk.tokenize import RegexpTokenizer

    return RegexpTokenizer(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    return _tokenizer().tokenize(text.lower())


class Vocabulary:
    """Word <-> id map. Ids 0..3 are <pad>, <start>, <end>, <unk>."""

    def __init__(self, words: Sequence[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.pad_id, self.start_id, self.end_id, self.unk_id = range(4)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1) -> "Vocabulary":
        """From tokenized training sentences; words rarer than min_freq become <unk>. Order is deterministic."""
        counts = Counter(w for sentence in sentences for w in sentence)
        frequent = (w for w, n in counts.items() if n >= min_freq and w not in SPECIALS)
        kept = sorted(frequent, key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str], max_len: int | None = None) -> list[int]:
        """<start> w1 .. wn <end>, words cut to max_len."""
        tokens = list(tokens)[:max_len] if max_len else list(tokens)
        return [self.start_id, *(self.index.get(t, self.unk_id) for t in tokens), self.end_id]

    def strip(self, ids: Sequence[int]) -> list[int]:
        """Ids of the words only: drops a leading <start>, stops at the first <end>/<pad>."""
        ids = list(ids)
        if ids and ids[0] == self.start_id:
            ids = ids[1:]
        for n, i in enumerate(ids):
            if i in (self.end_id, self.pad_id):
                return ids[:n]
        return ids

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.words[i] for i in self.strip(ids)]


# Words that say nothing of what a picture shows, in any English caption: articles, prepositions, conjunctions,
# pronouns, forms of "to be", numbers. What a model's own captions add to those (the words its training captions say
# of every picture) comes with the model: `ignored_words` of its vocabulary and its checkpoint's filler words.
FUNCTION_WORDS = frozenset(
    "a an the of on in at to into onto and or but is are was were be been being there its it this that these those "
    "with from by for as next between near against some one two three four five six seven eight nine ten his her "
    "their them they he she we you while up over under above below behind beside inside around through out off".split()
)


def ignored_words(vocabulary: list[str], fillers: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """What the caption-change path leaves out of a model's captions: the function words its vocabulary holds, and
    its own filler words (a checkpoint's `filler_words`: vidcap/synthetic.py's for the demo model; none for COCO)."""
    return frozenset(w for w in vocabulary if w in FUNCTION_WORDS) | frozenset(fillers)
