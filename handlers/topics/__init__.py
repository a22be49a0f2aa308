"""Topic suggestion from free Russian text: the interface the rest of the core sees.

Use cases depend on `TopicSuggester` only; the model behind it (handlers/topics/suggester.py,
a linear model over lemma and character n-grams) can be replaced without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MIN_SUGGESTIONS = 3
# A top suggestion at least this sure is "confident": the citizen is asked «Похоже, это … —
# верно?» and an import counts it as confident. Chosen on bench/data/topics_eval.tsv: at 0.6
# the top suggestion was right for 98.6 % of the 42 % of messages that reached it (README,
# «Подсказка тематики»).
CONFIDENT_SCORE = 0.6


@dataclass(frozen=True)
class Suggestion:
    topic_id: str
    score: float  # a probability in 0..1; the list of a text sums to 1


class TopicSuggester(Protocol):
    @property
    def ready(self) -> bool:
        """Whether suggest() answers at once; a chat turn must not wait for a model to train."""
        ...

    def warm_up(self) -> None:
        """Build the model now (blocking); called from a worker thread at start-up."""
        ...

    def suggest(self, text: str) -> list[Suggestion]:
        """Every topic of the organisation, best first (at least MIN_SUGGESTIONS)."""
        ...

    def suggest_many(self, texts: list[str]) -> list[list[Suggestion]]:
        """The same for many texts at once (imports): cheaper than one call per text."""
        ...


def suggest_now(suggester: TopicSuggester | None, text: str) -> list[Suggestion]:
    """Suggestions for a chat turn: [] while the model is not ready (a turn never waits for
    training) or when there is no suggester or no text."""
    if suggester is None or not suggester.ready or not text.strip():
        return []
    return suggester.suggest(text)
