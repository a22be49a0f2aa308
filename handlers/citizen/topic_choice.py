"""The citizen's topic screen when the text came first: the suggestions lead.

- With a confident suggestion (score ≥ CONFIRM_THRESHOLD) the citizen is asked «Похоже, это
  Энергетика — верно?» [Да] [Выбрать другую].
- Otherwise, or after «Выбрать другую», all topics are shown on one screen, the best one or
  two marked «⭐» and first, so it is still one tap.

The suggestion is computed once per text and kept in the dialog data ("suggested": [[topic,
score], …]); the item stores the best one and its score, so the share of accepted suggestions
can be counted. Kept apart from dialog.py so the dialog can be restructured around it.
"""

from __future__ import annotations

from typing import Any

from handlers.citizen.payloads import AllTopics, ChooseTopic
from handlers.events import Button, Reply
from handlers.topics import CONFIDENT_SCORE, suggest_now
from handlers.turn import Turn

CONFIRM_THRESHOLD = CONFIDENT_SCORE  # a wrong «Да» stays rare: see handlers/topics
# A second star only when the runner-up is a real alternative, not the tail of the list.
SECOND_STAR_SCORE = 0.15
STAR = "⭐ "


def remember_suggestions(turn: Turn, data: dict[str, Any]) -> None:
    """Suggest once for the report's text (again after the text is edited)."""
    text = data.get("text")
    if not text or data.get("suggested_for") == text:
        return
    suggestions = suggest_now(turn.services.topics, text)
    data["suggested_for"] = text
    data["suggested"] = [[s.topic_id, s.score] for s in suggestions[:2]
                         if s.topic_id in turn.services.org.topic_by_id]
    data.pop("suggestion_declined", None)


def starred(data: dict[str, Any]) -> list[str]:
    pairs = data.get("suggested") or []
    return [topic for i, (topic, score) in enumerate(pairs)
            if i == 0 or score >= SECOND_STAR_SCORE]


def confident(data: dict[str, Any]) -> str | None:
    pairs = data.get("suggested") or []
    if pairs and pairs[0][1] >= CONFIRM_THRESHOLD and not data.get("suggestion_declined"):
        return str(pairs[0][0])
    return None


def best_suggestion(data: dict[str, Any]) -> tuple[str | None, float | None]:
    """What the item records: the topic suggested first and its score."""
    pairs = data.get("suggested") or []
    return (str(pairs[0][0]), float(pairs[0][1])) if pairs else (None, None)


def topic_screen(turn: Turn) -> Reply:
    """The topic step's prompt when the text came first (the wizard adds the cancel row)."""
    t, org, data = turn.t, turn.services.org, turn.dialog.data
    guess = confident(data)
    if guess is not None:
        return Reply(t("report.topic_guess", topic=org.topic_by_id[guess].label(t.locale)),
                     buttons=[[Button(t("report.topic_yes"), ChooseTopic(guess).pack()),
                               Button(t("report.topic_other"),
                                      AllTopics().pack())]])
    first = starred(data)
    rows = [[Button(STAR + org.topic_by_id[topic].label(t.locale),
                    ChooseTopic(topic).pack())] for topic in first]
    rest = [Button(topic.label(t.locale), ChooseTopic(topic.id).pack())
            for topic in org.topics if topic.id not in first]
    rows += [rest[i:i + 2] for i in range(0, len(rest), 2)]
    key = "report.ask_topic_suggested" if first else "report.ask_topic"
    return Reply(t(key), buttons=rows)


def decline_guess(turn: Turn) -> None:
    """«Выбрать другую»: the full screen, suggestions still first."""
    turn.dialog.update(turn.now, suggestion_declined=True)
