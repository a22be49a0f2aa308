"""The topic suggester used by the bot: TF-IDF over lemmas and character n-grams, and a
softmax model, trained from handlers/topics/corpus.py.

It is built on first use (or by `warm_up` in the background), never at import, so `mcu run`
starts as fast as before. A trained model is cached in the data directory under the hash of
everything that shapes it; any change to the seed, the organisation's topics, this code's
version or the library versions trains it again instead of loading something stale.
With a cache, training runs in a process of its own (train.py) and this one loads the file:
the bot's memory keeps only the compact model (`Model`), never numpy.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from itertools import pairwise
from pathlib import Path

from handlers.org import Organisation
from handlers.topics import MIN_SUGGESTIONS, Suggestion
from handlers.topics.corpus import SEED_DIR, Example, content_hash, training_examples
from handlers.topics.text import GROUP_WEIGHTS, load_dictionaries, tokens

log = logging.getLogger(__name__)

# Bump when text.py, features.py or linear.py change what a trained model means, or when
# the cache file changes its form (2: one numpy-free .bin file instead of .npz + .json).
MODEL_VERSION = "2"
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
    """A trained model in its compact run-time form: the terms, their idf weights and the
    softmax weights as flat float arrays over an ordered list of topic ids.

    Suggesting needs no numpy, so `mcu run` never imports it when the model comes from the
    cache (numpy alone is ~15 MB resident); training (`fit`) imports it on demand. The softmax
    weights are float32, as the cache has always stored them: a freshly trained model is
    rounded the same way, so it answers exactly like the same model loaded from the cache.
    The arithmetic is that of `Vectorizer.transform` and `SoftmaxModel.probabilities` in
    float64, in the same order (tests/test_topics.py compares the two on the seed corpus).
    """

    def __init__(self, topic_ids: list[str], terms: list[str], idf: array[float],
                 weights: array[float], bias: array[float]) -> None:
        k = len(topic_ids)
        if len(idf) != len(terms) or len(weights) != len(terms) * k or len(bias) != k:
            raise ValueError("inconsistent topic model")
        # The terms as sorted UTF-8 bytes, looked up by bisection: a third of the memory of
        # a dict of str to int (bench/memory.py). Their order is the vectorizer's column
        # order already: it sorts the str terms, and UTF-8 keeps code point order.
        encoded = [term.encode() for term in terms]
        if any(a >= b for a, b in pairwise(encoded)):
            raise ValueError("topic model terms are not sorted")
        self.topic_ids = topic_ids
        self._terms = encoded
        self.idf = idf  # float64 per term
        self.weights = weights  # float32, (term, topic) row-major
        self.bias = bias  # float64 per topic

    @classmethod
    def fit(cls, examples: list[Example], topic_ids: list[str]) -> Model:
        import numpy as np

        from handlers.topics.features import Vectorizer
        from handlers.topics.linear import train

        documents = [tokens(e.text) for e in examples]
        vectorizer = Vectorizer.fit(documents)
        index = {topic: i for i, topic in enumerate(topic_ids)}
        labels = np.array([index[e.topic_id] for e in examples], dtype=np.int64)
        model = train(vectorizer.transform(documents), labels, len(topic_ids))
        terms = sorted(vectorizer.vocabulary, key=vectorizer.vocabulary.__getitem__)
        return cls(topic_ids, terms, array("d", vectorizer.idf.astype(np.float64).tolist()),
                   array("f", model.weights.astype(np.float32).ravel().tolist()),
                   array("d", model.bias.astype(np.float64).tolist()))

    def probabilities(self, texts: list[str]) -> list[list[float]]:
        return [self._probabilities(tokens(text)) for text in texts]

    def _probabilities(self, features: list[str]) -> list[float]:
        k = len(self.topic_ids)
        row = []
        for term, count in Counter(features).items():
            j = self.column(term)
            if j is not None:
                row.append((j, (1 + math.log(count)) * GROUP_WEIGHTS[term[0]]))
        row.sort()
        values = [value * self.idf[j] for j, value in row]
        norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
        scores: list[float] | None = None
        for (j, _), value in zip(row, values, strict=True):
            x = value / norm
            weights = self.weights[j * k:(j + 1) * k]
            scores = ([x * w for w in weights] if scores is None
                      else [s + x * w for s, w in zip(scores, weights, strict=True)])
        totals = [(s + b) for s, b in zip(scores or [0.0] * k, self.bias, strict=True)]
        top = max(totals)
        shifted = [math.exp(s - top) for s in totals]
        total = math.fsum(shifted)
        return [s / total for s in shifted]

    def column(self, term: str) -> int | None:
        """The term's index in the vocabulary, None when the model does not know it."""
        key = term.encode()
        j = bisect_left(self._terms, key)
        return j if j < len(self._terms) and self._terms[j] == key else None

    def terms(self) -> list[str]:
        return [term.decode() for term in self._terms]

    # Plain data only, numpy-free: one JSON line (topics, terms), then little-endian idf
    # (float64), bias (float64) and weights (float32).
    def save(self, path: Path) -> None:
        header = json.dumps({"topics": self.topic_ids, "terms": self.terms()}, ensure_ascii=False)
        blocks = [header.encode("utf-8") + b"\n"]
        for values in (self.idf, self.bias, self.weights):
            copy = array(values.typecode, values)
            if sys.byteorder == "big":
                copy.byteswap()
            blocks.append(copy.tobytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(b"".join(blocks))
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> Model:
        raw = path.read_bytes()
        end = raw.index(b"\n")  # ValueError when there is none
        meta = json.loads(raw[:end].decode("utf-8"))
        data = memoryview(raw)
        topics, terms = list(meta["topics"]), list(meta["terms"])
        n, k = len(terms), len(topics)
        offset, arrays = end + 1, []
        for typecode, count in (("d", n), ("d", k), ("f", n * k)):
            values = array(typecode)
            size = values.itemsize * count
            values.frombytes(data[offset:offset + size])
            if len(values) != count:
                raise ValueError("inconsistent cached topic model")
            if sys.byteorder == "big":
                values.byteswap()
            arrays.append(values)
            offset += size
        if offset != len(data):
            raise ValueError("inconsistent cached topic model")
        idf, bias, weights = arrays
        return cls(topics, terms, idf, weights, bias)


def train_in_child(examples: list[Example], topic_ids: list[str], path: Path) -> Model | None:
    """Train in `python -m handlers.topics.train` and load the model it writes to `path`;
    None when that did not work (no interpreter to start, no writable cache): the caller
    then trains in its own process."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    request = json.dumps({"topics": topic_ids,
                          "examples": [[e.topic_id, e.text] for e in examples]},
                         ensure_ascii=False).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "handlers.topics.train", str(path)],
                              input=request, capture_output=True, env=env, timeout=900,
                              check=False)
        if done.returncode == 0:
            model = Model.load(path)
            if model.topic_ids == topic_ids:
                return model
        # Only the exit status: the examples (citizens' words) stay out of the log.
        log.warning("topic model training process failed (exit %s), training here",
                    done.returncode)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("topic model training process not run (%s), training here",
                    type(exc).__name__)
    return None


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
        path = self._cache_dir / f"{CACHE_PREFIX}{key}.bin" if self._cache_dir else None
        if path is not None and path.is_file():
            try:
                model = Model.load(path)
                if model.topic_ids == self.topic_ids:
                    log.info("topic model loaded from cache in %.2f s",
                             time.monotonic() - started)
                    return model
            except (OSError, ValueError, KeyError):
                log.warning("topic model cache unreadable, training again")
        model = self._train(examples, path)
        log.info("topic model trained on %d examples in %.2f s", len(examples),
                 time.monotonic() - started)
        return model

    def _train(self, examples: list[Example], path: Path | None) -> Model:
        """Train, and cache the result at `path`: in a process of its own when there is a
        cache to hand the model over (handlers/topics/train.py), else (or if that fails)
        here."""
        if path is not None:
            try:
                for old in path.parent.glob(f"{CACHE_PREFIX}*"):
                    old.unlink(missing_ok=True)
            except OSError:
                pass
            model = train_in_child(examples, self.topic_ids, path)
            if model is not None:
                return model
        model = Model.fit(examples, self.topic_ids)
        if path is not None:
            try:
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
            order = sorted(range(len(row)), key=lambda i: -row[i])  # stable: ties by index
            result.append([Suggestion(model.topic_ids[i], round(row[i], 4)) for i in order])
        assert all(len(r) >= min(MIN_SUGGESTIONS, len(self.topic_ids)) for r in result)
        return result
