"""`vidcap search`: ranked caption stretches across the library for a text query.

Two signals, both cheap at query time:
- full text: SQLite FTS5 (BM25) finds the candidate stretches that contain a query word or one of its synonyms,
  in their caption or in the other captions of the beam over the stretch (another way the model would have said
  it: "on the sea" where the caption says "floating on water"; such a word counts ALSO);
- the model's own word embeddings: the rows of its output layer (the vectors it scores each next word with).
  Words it uses interchangeably get nearly the same row ("disc" and "circle", "block" and "square": cosine 0.93
  in the demo model), so a synonym the model uses still finds the right stretch.

A stretch's score is the mean, over the query's content words, of its best match among the stretch's words (1 for
the word itself or its plural, the cosine for a synonym at or above SYNONYM, else 0): every query word counts, and a
stretch that names all of them ranks first. Ties go to BM25, then to the longer stretch. Adjacent stretches of one
video with the same score are one hit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vidcap.errors import InputError
from vidcap.library.store import Library
from vidcap.vocab import FUNCTION_WORDS

# Words of a query that say nothing of what was seen: English's function words, and the ways of saying "a picture
# of" and where in it, on which captions vary while the scene does not.
QUERY_NOISE = FUNCTION_WORDS | frozenset("picture image photo shapes shape left right middle centre center front "
                                         "floating sits sitting standing top bottom side".split())

MAX_QUERY_CHARS = 500
DEFAULT_TOP, MAX_TOP = 10, 100  # hits per answer
SYNONYM = 0.8  # cosine between output word embeddings at or above which two words are one to search
CANDIDATES = 5000  # stretches read from the full-text index per query, best BM25 first
ALSO = 0.9  # a word only the beam's other captions used counts this much: the best caption is the model's choice


@dataclass(frozen=True)
class Hit:
    path: str
    start: float
    end: float
    caption: str
    score: float  # 0..1: the share of the query's words the stretch names (synonyms count by their similarity)


def output_word_vectors(classifier_weight) -> np.ndarray:
    """The model's output layer rows (`decoder.classifier.weight`), centred and unit length: (vocabulary, hidden)
    float32."""
    vectors = classifier_weight.detach().float().cpu().numpy()
    vectors = vectors - vectors.mean(axis=0)
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def query_words(query: str) -> list[str]:
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"the query is {len(query)} characters long; at most {MAX_QUERY_CHARS}")
    words = [w for w in re.findall(r"[a-z0-9]+", query.lower()) if w not in QUERY_NOISE]
    if not words:
        raise InputError("the query has no words to search for (only common words such as 'a', 'on', 'the'); "
                         "name what was seen, e.g. 'red star on grass'")
    return list(dict.fromkeys(words))


def search_library(path, query: str, top: int = DEFAULT_TOP) -> list[Hit]:
    """Search the library at `path` (None: the default place), opened for this query only: what the servers
    call, so that a library being indexed meanwhile is read as it is now."""
    if not 1 <= top <= MAX_TOP:
        raise InputError(f"top must be 1..{MAX_TOP}, got {top}")
    query_words(query)  # a bad query is answered before the database is opened
    with Library.open(path, create=False) as library:
        return search(library, query, top)


def search(library: Library, query: str, top: int = DEFAULT_TOP) -> list[Hit]:
    words = query_words(query)
    if top < 1:
        raise InputError("--top must be at least 1")
    scored: list[_Candidate] = []
    for (key,) in library.db.execute("SELECT DISTINCT model_key FROM videos WHERE status = 'indexed'").fetchall():
        matcher = _Matcher(words, library.model_vectors(key))
        terms = " OR ".join(f'"{t}"' for t in matcher.terms())
        rows = library.db.execute(
            "SELECT s.video_id, v.path, s.start, s.end, s.caption, s.also, bm25(stretch_text) FROM stretch_text "
            "JOIN stretches s ON s.id = stretch_text.rowid JOIN videos v ON v.id = s.video_id "
            "WHERE stretch_text MATCH ? AND v.status = 'indexed' AND v.model_key = ? ORDER BY bm25(stretch_text) "
            "LIMIT ?", (terms, key, CANDIDATES)).fetchall()
        for video_id, path, start, end, caption, also, bm25 in rows:
            score = matcher.score(caption, also)
            if score > 0:
                scored.append(_Candidate(video_id, path, start, end, caption, score, bm25))
    return _merge_adjacent(scored)[:top]


@dataclass
class _Candidate:
    video_id: int
    path: str
    start: float
    end: float
    caption: str  # of its longest part, once adjacent stretches are joined
    score: float
    bm25: float  # lower is better
    longest: float = 0.0  # the length of the part the caption comes from

    def __post_init__(self):
        self.longest = self.longest or self.end - self.start


class _Matcher:
    """The query's content words, each with the words of the model that count for it (itself 1.0, synonyms their
    cosine)."""

    def __init__(self, words: list[str], model: tuple[list[str], np.ndarray] | None):
        vocabulary, vectors = model if model is not None else ([], np.zeros((0, 1), dtype=np.float32))
        index = {w: i for i, w in enumerate(vocabulary)}
        self.singular = lambda word: _singular(word, index)
        self.words = [self.singular(w) for w in words]
        self.similar: dict[str, dict[str, float]] = {w: {w: 1.0} for w in self.words}
        for w in self.words:
            if w in index:
                cosine = vectors @ vectors[index[w]]
                self.similar[w].update({vocabulary[i]: float(cosine[i]) for i in np.flatnonzero(cosine >= SYNONYM)
                                        if vocabulary[i].isalnum()})

    def terms(self) -> list[str]:
        return sorted({t for similar in self.similar.values() for t in similar})

    def score(self, caption: str, also: str = "") -> float:
        said = {self.singular(w) for w in caption.split()}
        other = {self.singular(w) for w in also.split()} - said
        return sum(max([s for t, s in self.similar[w].items() if t in said]
                       + [ALSO * s for t, s in self.similar[w].items() if t in other], default=0.0)
                   for w in self.words) / len(self.words)


def _singular(word: str, vocabulary) -> str:
    """"blocks" -> "block", "crosses" -> "cross" where the singular is a word of the model; else the word."""
    for ending in ("es", "s"):
        if word.endswith(ending) and word[: -len(ending)] in vocabulary:
            return word[: -len(ending)]
    return word


def _merge_adjacent(scored: list[_Candidate]) -> list[Hit]:
    """Join stretches of one video that touch and score the same (the caption said it in other words for a while)
    into one hit with the caption of the longest part, then rank."""
    merged: list[_Candidate] = []
    for c in sorted(scored, key=lambda c: (c.video_id, c.start)):
        last = merged[-1] if merged else None
        if last and last.video_id == c.video_id and abs(last.end - c.start) < 1e-6 and abs(last.score - c.score) < 1e-9:
            if c.longest > last.longest:
                last.caption, last.longest = c.caption, c.longest
            last.end, last.bm25 = c.end, min(last.bm25, c.bm25)
        else:
            merged.append(c)
    merged.sort(key=lambda c: (-c.score, c.bm25, -(c.end - c.start), c.path, c.start))
    return [Hit(c.path, c.start, c.end, c.caption, round(c.score, 4)) for c in merged]
