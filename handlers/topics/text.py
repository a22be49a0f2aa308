"""From a resident's message to the tokens the model sees: words, their lemmas, char n-grams.

pymorphy3 is imported on first use, not at start-up: its dictionaries take ~30 MB and a
fraction of a second, which only a process that suggests topics should pay.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from itertools import pairwise
from typing import Any

WORD = re.compile(r"[a-zа-я0-9]+(?:-[a-zа-я0-9]+)*")
# Short forms residents use, expanded to the words the seed and the dictionary know.
ABBREVIATIONS = {
    "ул": "улица", "д": "дом", "кв": "квартира", "мкд": "дом", "эл": "электричество",
    "управляйка": "управляющая", "управляшка": "управляющая", "мусорка": "мусор",
}
NGRAM_MIN, NGRAM_MAX = 3, 5
# The weight of each token group ("w:", "b:", "c:") in the TF-IDF vector. Character n-grams
# outnumber words several times over; without a smaller weight they would drown the lemma
# features, which carry most of the meaning.
GROUP_WEIGHTS = {"w": 1.0, "b": 0.7, "c": 0.35}

_morph: Any = None
_morph_lock = threading.Lock()


def load_dictionaries() -> None:
    """Load the morphology dictionaries now (a worker thread at start-up), not in a chat turn."""
    _analyzer()


def _analyzer() -> Any:
    global _morph
    if _morph is None:
        with _morph_lock:
            if _morph is None:
                import pymorphy3

                _morph = pymorphy3.MorphAnalyzer()
    return _morph


def words(text: str) -> list[str]:
    """Lower-case words; «ё» is «е» because residents rarely type it."""
    lowered = text.lower().replace("ё", "е")
    return [ABBREVIATIONS.get(word, word) for word in WORD.findall(lowered)]


@lru_cache(maxsize=50_000)
def lemma(word: str) -> str:
    if len(word) < 3 or word.isdigit():
        return word
    return str(_analyzer().parse(word)[0].normal_form).replace("ё", "е")


def char_ngrams(word: str) -> list[str]:
    """N-grams of a word with its boundaries marked: they survive typos and unknown forms."""
    marked = f"<{word}>"
    return [marked[i:i + n] for n in range(NGRAM_MIN, NGRAM_MAX + 1)
            for i in range(len(marked) - n + 1)]


def tokens(text: str) -> list[str]:
    """The features of a text, before weighting: lemma unigrams and bigrams ("w:", "b:") and
    character n-grams of the words as written ("c:")."""
    raw = [w for w in words(text) if not w.isdigit()]
    lemmas = [lemma(w) for w in raw]
    out = [f"w:{x}" for x in lemmas]
    out += [f"b:{a}_{b}" for a, b in pairwise(lemmas)]
    for word in raw:
        if len(word) > 2:
            out += ["c:" + gram for gram in char_ngrams(word)]
    return out
