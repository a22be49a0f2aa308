"""Benchmark of the topic suggester: `python bench/topics.py [--eval FILE] [--compare]`.

Trains the shipped suggester from the seed (handlers/topics/seed, the organisation file) and
scores it on an evaluation set that is never trained on (bench/data/topics_eval.tsv: id, topic,
text). Prints top-1 and top-3 accuracy, the confusion pairs, the precision of the top
suggestion above each confidence threshold, the time per message, the training and cache load
times, and the memory the suggester adds to the process. `--compare` also scores the candidate
designs that were measured before choosing (a keyword matcher, words without lemmas, lemmas
without character n-grams, …; scikit-learn's LogisticRegression when it is installed).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402  (the bot has numpy loaded already: not counted as added)

from bot.settings import DEFAULT_ORG_FILE  # noqa: E402
from handlers.org import Organisation, load_organisation  # noqa: E402
from handlers.topics import Suggestion  # noqa: E402
from handlers.topics.evaluation import (  # noqa: E402
    EvalReport,
    Labelled,
    read_labelled,
    report_lines,
    score,
)

EVAL_FILE = ROOT / "bench" / "data" / "topics_eval.tsv"


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def as_suggestions(topic_ids: list[str], probabilities: np.ndarray) -> list[list[Suggestion]]:
    return [[Suggestion(topic_ids[i], float(row[i])) for i in np.argsort(-row, kind="stable")]
            for row in probabilities]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=EVAL_FILE, help="TSV: id, topic, text")
    parser.add_argument("--org", type=Path, default=DEFAULT_ORG_FILE)
    parser.add_argument("--compare", action="store_true", help="also score the candidates")
    args = parser.parse_args()
    org = load_organisation(args.org)
    rows = read_labelled(args.eval)
    unknown = sorted({row.topic for row in rows} - set(org.topic_by_id))
    if unknown:
        sys.exit(f"{args.eval}: topics not in the organisation file: {', '.join(unknown)}")

    before = rss_mb()
    from handlers.topics import suggester as suggester_module
    from handlers.topics.suggester import LinearTopicSuggester

    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        suggester = LinearTopicSuggester(org, cache_dir=Path(cache))
        suggester.warm_up()
        trained = time.perf_counter() - started
        suggester_module._BUILT.clear()  # measure the file cache, not the in-process memo
        started = time.perf_counter()
        LinearTopicSuggester(org, cache_dir=Path(cache)).warm_up()
        loaded = time.perf_counter() - started
    results = suggester.suggest_many([row.text for row in rows])
    # One message at a time, as the dialog calls it.
    times = []
    for row in rows:
        started = time.perf_counter()
        suggester.suggest(row.text)
        times.append((time.perf_counter() - started) * 1000)
    added = rss_mb() - before

    print(f"evaluation set: {args.eval}")
    print("chosen: lemmas (pymorphy3) + lemma bigrams + char 3–5-grams, TF-IDF, softmax (numpy)")
    print("\n".join(report_lines(score(rows, results))))
    times.sort()
    print(f"time per message: median {statistics.median(times):.2f} ms, "
          f"p95 {times[int(len(times) * 0.95)]:.2f} ms, max {times[-1]:.2f} ms")
    print(f"training from the seed: {trained:.2f} s; loading the cached model: {loaded:.2f} s")
    print(f"memory added (RSS): {added:.0f} MB")
    if args.compare:
        compare(org, rows)


def compare(org: Organisation, rows: list[Labelled]) -> None:
    from handlers.topics import text as text_module
    from handlers.topics.corpus import training_examples
    from handlers.topics.features import Vectorizer
    from handlers.topics.linear import train

    examples = training_examples(org)
    topic_ids = [topic.id for topic in org.topics]
    index = {topic: i for i, topic in enumerate(topic_ids)}
    labels = np.array([index[e.topic_id] for e in examples])

    def plain_words(t: str) -> list[str]:
        return [f"w:{w}" for w in text_module.words(t) if not w.isdigit()]

    def lemmas(t: str) -> list[str]:
        return [f"w:{text_module.lemma(w)}" for w in text_module.words(t) if not w.isdigit()]

    def lemmas_bigrams(t: str) -> list[str]:
        return [x for x in text_module.tokens(t) if not x.startswith("c:")]

    def chars_only(t: str) -> list[str]:
        return [x for x in text_module.tokens(t) if x.startswith("c:")]

    variants: dict[str, Callable[[str], list[str]]] = {
        "words as written": plain_words,
        "lemmas": lemmas,
        "lemmas + bigrams": lemmas_bigrams,
        "char 3–5-grams only": chars_only,
        "lemmas + bigrams + char n-grams (chosen)": text_module.tokens,
    }
    print("\ncandidates (top-1 / top-3 on the evaluation set):")
    print(f"  {'keyword matcher on topic titles':48} "
          + fmt(score(rows, keyword_matcher(org, rows))))
    print(f"  {'keyword matcher on titles + seed keyword lists':48} "
          + fmt(score(rows, keyword_matcher(org, rows, with_seed_keywords=True))))
    for name, tokenize in variants.items():
        train_docs = [tokenize(e.text) for e in examples]
        vectorizer = Vectorizer.fit(train_docs)
        model = train(vectorizer.transform(train_docs), labels, len(topic_ids))
        probabilities = model.probabilities(vectorizer.transform([tokenize(r.text)
                                                                  for r in rows]))
        print(f"  {name:48} " + fmt(score(rows, as_suggestions(topic_ids, probabilities))))
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        print("  (scikit-learn is not installed: its LogisticRegression is not compared)")
        return
    train_docs = [text_module.tokens(e.text) for e in examples]
    vectorizer = Vectorizer.fit(train_docs)
    x = vectorizer.transform(train_docs)
    from scipy.sparse import csr_matrix

    def to_scipy(m):  # type: ignore[no-untyped-def]
        return csr_matrix((m.data, m.indices, m.indptr), shape=(m.n_rows, m.n_features))

    for c in (10.0, 100.0):
        sk = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        sk.fit(to_scipy(x), labels)
        probabilities = sk.predict_proba(to_scipy(vectorizer.transform(
            [text_module.tokens(r.text) for r in rows])))
        print(f"  {'same features, scikit-learn LogReg C=' + str(c):48} "
              + fmt(score(rows, as_suggestions(topic_ids, probabilities))))


def keyword_matcher(org: Organisation, rows: list[Labelled],
                    with_seed_keywords: bool = False) -> list[list[Suggestion]]:
    """The baseline the issue names: a message matches the topics whose title words (as
    lemmas) it contains, the most shared words first; no match means «другое»."""
    from handlers.topics.corpus import KEYWORDS, SEED_DIR
    from handlers.topics.text import lemma, words

    keys = {t.id: {lemma(w) for w in words(t.title) if len(w) > 2} for t in org.topics}
    if with_seed_keywords:
        for topic in org.topics:
            path = SEED_DIR / f"{topic.id}.txt"
            for line in path.read_text("utf-8").splitlines() if path.is_file() else []:
                if line.startswith(KEYWORDS):
                    keys[topic.id] |= {lemma(w) for w in words(line[len(KEYWORDS):])
                                       if len(w) > 2}
    out = []
    for row in rows:
        found = {lemma(w) for w in words(row.text)}
        hits = sorted(org.topics, key=lambda t: -len(keys[t.id] & found))
        if not keys[hits[0].id] & found:
            hits = sorted(org.topics, key=lambda t: t.id != "other")
        out.append([Suggestion(t.id, 0.0) for t in hits])
    return out


def fmt(report: EvalReport) -> str:
    return f"{report.top1_share:6.1%} / {report.top3_share:6.1%}"


if __name__ == "__main__":
    main()
