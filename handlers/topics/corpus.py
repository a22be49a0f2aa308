"""The training examples: the seed files the project ships plus what the organisation file says.

A seed file `seed/<topic id>.txt` holds one example message per line; `#` starts a comment and
a line `keywords: a, b, c` lists keywords, each an example of its own. The organisation file
adds the topic's title, description and `phrases`, so a municipality can add a topic (or teach
an existing one its own words) without touching code. Labelled corrections from heads can be
added by the caller (`extra`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from handlers.org import Organisation

SEED_DIR = Path(__file__).parent / "seed"
KEYWORDS = "keywords:"


@dataclass(frozen=True)
class Example:
    topic_id: str
    text: str


def read_seed_file(path: Path, topic_id: str) -> list[Example]:
    examples = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith(KEYWORDS):
            examples += [Example(topic_id, word.strip())
                         for word in line[len(KEYWORDS):].split(",") if word.strip()]
        else:
            examples.append(Example(topic_id, line))
    return examples


def training_examples(org: Organisation, seed_dir: Path = SEED_DIR,
                      extra: Iterable[Example] = ()) -> list[Example]:
    """Examples of the organisation's topics only: a seed file of a topic the organisation
    does not have is ignored, and an extra example of an unknown topic too."""
    examples: list[Example] = []
    for topic in org.topics:
        examples.append(Example(topic.id, topic.title))
        if topic.description:
            examples.append(Example(topic.id, topic.description))
        examples += [Example(topic.id, phrase) for phrase in topic.phrases if phrase.strip()]
        path = seed_dir / f"{topic.id}.txt"
        if path.is_file():
            examples += read_seed_file(path, topic.id)
    known = set(org.topic_by_id)
    examples += [e for e in extra if e.topic_id in known]
    return examples


def content_hash(examples: Iterable[Example], *parts: str) -> str:
    """Identifies a trained model: the examples in order plus whatever else shapes it
    (the feature code's version, library versions)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    for example in examples:
        digest.update(example.topic_id.encode() + b"\t" + example.text.encode() + b"\n")
    return digest.hexdigest()[:16]
