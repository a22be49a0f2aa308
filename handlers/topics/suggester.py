"""The topic suggester used by the bot: TF-IDF over lemmas and character n-grams, and a
softmax model, trained from handlers/topics/corpus.py.

It is built on first use (or by `warm_up` in the background), never at import, so `mcu run`
starts as fast as before. A trained model is cached in the data directory under the hash of
everything that shapes it; any change to the seed, the organisation's topics, this code's
version or the library versions trains it again instead of loading something stale.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from handlers.org import Organisation
from handlers.topics import MIN_SUGGESTIONS, Suggestion
from handlers.topics.corpus import SEED_DIR, Example, content_hash, training_examples
from handlers.topics.features import Vectorizer
from handlers.topics.linear import SoftmaxModel, train
from handlers.topics.text import load_dictionaries, tokens

log = logging.getLogger(__name__)

# Bump when text.py, features.py or linear.py change what a trained model means.
MODEL_VERSION = "1"
CACHE_PREFIX = "topics-model-"
# Models already built in this process, by content hash: a second suggester for the same
# organisation (the CLI, tests, a reloaded service) does not train again.
_BUILT: dict[str, Model] = {}


def _library_versions() -> str:
    found = []
    for package in ("numpy", "pymorphy3", "pymorphy3-dicts-ru"):
        try:
            found.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            found.append(f"{package}=?")
    return ",".join(found)


class Model:
    """A trained vectorizer and softmax model over an ordered list of topic ids."""

    def __init__(self, topic_ids: list[str], vectorizer: Vectorizer, model: SoftmaxModel):
        self.topic_ids = topic_ids
        self.vectorizer = vectorizer
        self.model = model

    @classmethod
    def fit(cls, examples: list[Example], topic_ids: list[str]) -> Model:
        documents = [tokens(e.text) for e in examples]
        vectorizer = Vectorizer.fit(documents)
        index = {topic: i for i, topic in enumerate(topic_ids)}
        labels = np.array([index[e.topic_id] for e in examples], dtype=np.int64)
        model = train(vectorizer.transform(documents), labels, len(topic_ids))
        return cls(topic_ids, vectorizer, model)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return self.model.probabilities(self.vectorizer.transform([tokens(t) for t in texts]))

    # Plain data only: a JSON file of terms and topics, an .npz of float arrays.
    def save(self, path: Path) -> None:
        terms = sorted(self.vectorizer.vocabulary, key=self.vectorizer.vocabulary.__getitem__)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, idf=self.vectorizer.idf, weights=self.model.weights.astype(np.float32),
                 bias=self.model.bias)
        meta = path.with_suffix(".json")
        meta.with_suffix(".tmp").write_text(json.dumps({"topics": self.topic_ids,
                                                        "terms": terms}, ensure_ascii=False),
                                            encoding="utf-8")
        meta.with_suffix(".tmp").replace(meta)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> Model:
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        with np.load(path, allow_pickle=False) as arrays:
            idf, weights, bias = arrays["idf"], arrays["weights"], arrays["bias"]
        vocabulary = {term: i for i, term in enumerate(meta["terms"])}
        if len(vocabulary) != len(idf) or weights.shape != (len(idf), len(meta["topics"])):
            raise ValueError("inconsistent cached topic model")
        return cls(list(meta["topics"]), Vectorizer(vocabulary, idf),
                   SoftmaxModel(weights.astype(np.float64), bias))


class LinearTopicSuggester:
    """`TopicSuggester` for an organisation; thread-safe, built once on first use."""

    def __init__(self, org: Organisation, cache_dir: Path | None = None,
                 seed_dir: Path = SEED_DIR, extra: list[Example] | None = None) -> None:
        self.topic_ids = [topic.id for topic in org.topics]
        self._org = org
        self._cache_dir = cache_dir
        self._seed_dir = seed_dir
        self._extra = extra or []
        self._model: Model | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._model is not None

    def model(self) -> Model:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._build()
        return self._model

    def warm_up(self) -> None:
        """Build now (from a background thread at start-up) so no citizen waits for it."""
        self.model()

    def _build(self) -> Model:
        # Before the model counts as ready: a cached model would otherwise leave the
        # dictionaries to load in the first chat turn that asks for a suggestion.
        load_dictionaries()
        examples = training_examples(self._org, self._seed_dir, self._extra)
        key = content_hash(examples, MODEL_VERSION, _library_versions(),
                           ",".join(self.topic_ids))
        if key in _BUILT:
            return _BUILT[key]
        model = self._load_or_train(examples, key)
        _BUILT[key] = model
        return model

    def _load_or_train(self, examples: list[Example], key: str) -> Model:
        started = time.monotonic()
        path = self._cache_dir / f"{CACHE_PREFIX}{key}.npz" if self._cache_dir else None
        if path is not None and path.is_file():
            try:
                model = Model.load(path)
                if model.topic_ids == self.topic_ids:
                    log.info("topic model loaded from cache in %.2f s",
                             time.monotonic() - started)
                    return model
            except (OSError, ValueError, KeyError):
                log.warning("topic model cache unreadable, training again")
        model = Model.fit(examples, self.topic_ids)
        log.info("topic model trained on %d examples in %.2f s", len(examples),
                 time.monotonic() - started)
        if path is not None:
            try:
                for old in path.parent.glob(f"{CACHE_PREFIX}*"):
                    old.unlink(missing_ok=True)
                model.save(path)
            except OSError:
                log.warning("topic model cache not written to %s", path.parent)
        return model

    def suggest(self, text: str) -> list[Suggestion]:
        return self.suggest_many([text])[0]

    def suggest_many(self, texts: list[str]) -> list[list[Suggestion]]:
        if not texts:
            return []
        model = self.model()
        result = []
        for row in model.probabilities(texts):
            order = np.argsort(-row, kind="stable")
            result.append([Suggestion(model.topic_ids[i], round(float(row[i]), 4))
                           for i in order])
        assert all(len(r) >= min(MIN_SUGGESTIONS, len(self.topic_ids)) for r in result)
        return result
