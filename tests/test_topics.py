"""The topic suggester: fixed phrases, the shape of its answers, its cache, the organisation
file teaching it a new topic, the `mcu topics` commands and the corrections export.

Accuracy is not asserted here: bench/topics.py measures it on the evaluation set.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from bot.cli import main
from bot.settings import DEFAULT_ORG_FILE
from handlers.items import NewItem, register_item
from handlers.org import parse_organisation
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Actor
from handlers.topics import MIN_SUGGESTIONS, suggest_now
from handlers.topics.suggester import CACHE_PREFIX, LinearTopicSuggester
from storage.models import Item, TopicCorrection
from tests.support.topics import ready_suggester

PHRASES = {
    "education": ["В детском саду №3 не хватает воспитателей",
                  "учительница математики не объясняет тему на уроке"],
    "healthcare": ["не могу попасть к терапевту в поликлинику", "скорую ждали полтора часа"],
    "social_protection": ["пенсионерке не пришла субсидия на коммунальные услуги",
                          "малоимущей семье нужна материальная помощь"],
    "transport": ["автобус №4 не ходит по расписанию", "маршрутка до Некрасовки не пришла вечером"],
    "roads": ["на дороге по ул. Ленина глубокая яма", "тротуар не чистят от снега, гололёд"],
    "energy": ["не горит фонарь у подъезда", "отключили электричество на всей улице"],
    "housing": ["управляйка не чинит протекающую крышу",
                "в квартире холодные батареи, нет отопления"],
    "waste": ["мусорку не вывозят неделю, баки переполнены", "стихийная свалка за гаражами"],
    "property": ["как приватизировать муниципальную квартиру",
                 "брошенное муниципальное здание разворовывают"],
    "land": ["сосед захватил часть моего земельного участка",
             "как оформить землю под гаражом в аренду"],
    "construction": ["стройка шумит по ночам, строители забивают сваи",
                     "когда достроят новый дом для переселенцев"],
    "trade": ["в магазине продали просроченное молоко", "ларёк продаёт пиво подросткам"],
    "sport": ["когда зальют каток на стадионе", "нет секции бокса для детей"],
    "culture": ["в доме культуры отменили концерт", "библиотека закрыта по выходным"],
    "guardianship": ["хочу оформить опеку над внуком", "соседи пьют, маленькие дети без присмотра"],
    "other": ["бродячие собаки кусают прохожих", "плохая мобильная связь в посёлке"],
}


@pytest.fixture(scope="module")
def suggester() -> LinearTopicSuggester:
    return ready_suggester()


@pytest.mark.parametrize(("topic", "text"),
                         [(topic, text) for topic, texts in PHRASES.items() for text in texts])
def test_fixed_phrases_get_their_topic_first(suggester, topic, text):
    assert suggester.suggest(text)[0].topic_id == topic


def test_every_topic_is_ranked_best_first_with_probabilities(suggester):
    suggestions = suggester.suggest("Не горит фонарь у дома 12 по ул. Ленина")
    assert len(suggestions) == 16 >= MIN_SUGGESTIONS
    assert {s.topic_id for s in suggestions} == set(suggester.topic_ids)
    scores = [s.score for s in suggestions]
    assert scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1) < 0.01 and all(0 <= s <= 1 for s in scores)
    # Typos and colloquial words still reach the topic (character n-grams, lemmas).
    assert suggester.suggest("фанарь нигорит возле подьезда")[0].topic_id == "energy"
    # Many at once gives the same as one by one, in order.
    texts = PHRASES["waste"] + PHRASES["sport"]
    assert [r[0].topic_id for r in suggester.suggest_many(texts)] == [
        suggester.suggest(t)[0].topic_id for t in texts]


def test_a_turn_never_waits_for_training():
    cold = LinearTopicSuggester(parse_organisation(DEFAULT_ORG_FILE.read_text("utf-8")))
    assert not cold.ready and suggest_now(cold, "яма на дороге") == []
    assert suggest_now(None, "яма на дороге") == []


def test_the_model_is_cached_as_plain_arrays_by_content_hash(tmp_path, monkeypatch, suggester):
    import handlers.topics.suggester as module

    org = parse_organisation(DEFAULT_ORG_FILE.read_text("utf-8"))
    monkeypatch.setattr(module, "_BUILT", {})
    # With a cache, training runs in a process of its own (handlers/topics/train.py) and
    # gives the same model as training in this process (the fixture, no cache).
    trained = LinearTopicSuggester(org, cache_dir=tmp_path)
    trained.warm_up()
    texts = [text for texts in PHRASES.values() for text in texts]
    assert trained.suggest_many(texts) == suggester.suggest_many(texts)
    [cached] = tmp_path.glob(f"{CACHE_PREFIX}*")
    # Plain data, no pickle: a JSON line of topics and terms, then the float arrays.
    header, _, arrays = cached.read_bytes().partition(b"\n")
    meta = json.loads(header)
    assert meta["topics"] == trained.topic_ids
    n, k = len(meta["terms"]), len(meta["topics"])
    assert len(arrays) == 8 * n + 8 * k + 4 * n * k

    # A new process (no in-memory model) loads the file instead of training, and answers
    # exactly as the model it was saved from.
    monkeypatch.setattr(module, "_BUILT", {})
    monkeypatch.setattr(LinearTopicSuggester, "_train",
                        lambda *a: pytest.fail("trained again"))
    loaded_suggester = LinearTopicSuggester(org, cache_dir=tmp_path)
    assert loaded_suggester.suggest("яма на дороге")[0].topic_id == "roads"
    assert loaded_suggester.suggest_many(texts) == trained.suggest_many(texts)

    # Different training data is a different hash: trained again, the stale file replaced.
    monkeypatch.undo()
    monkeypatch.setattr(module, "_BUILT", {})
    from handlers.topics.corpus import Example

    LinearTopicSuggester(org, cache_dir=tmp_path,
                         extra=[Example("roads", "выбоина на трассе")]).warm_up()
    assert [p.name for p in tmp_path.glob(f"{CACHE_PREFIX}*")] != [cached.name]
    assert len(list(tmp_path.glob(f"{CACHE_PREFIX}*"))) == 1


def test_training_falls_back_to_this_process_when_the_child_fails(tmp_path, monkeypatch,
                                                                 suggester, caplog):
    import handlers.topics.suggester as module

    org = parse_organisation(DEFAULT_ORG_FILE.read_text("utf-8"))
    monkeypatch.setattr(module, "_BUILT", {})
    monkeypatch.setattr(module.sys, "executable", str(tmp_path / "no-python"))
    fallback = LinearTopicSuggester(org, cache_dir=tmp_path / "cache")
    fallback.warm_up()
    assert "training here" in caplog.text
    assert len(list((tmp_path / "cache").glob(f"{CACHE_PREFIX}*"))) == 1  # still cached
    texts = PHRASES["roads"] + PHRASES["energy"]
    assert fallback.suggest_many(texts) == suggester.suggest_many(texts)


def test_the_compact_model_predicts_as_the_numpy_model_on_the_seed_corpus(suggester):
    """The bot's model (suggester.Model, no numpy) against the training code's own
    prediction (features.Vectorizer + linear.SoftmaxModel) with the same float32 weights:
    the same ranking of every topic for every seed example, the same rounded scores."""
    from handlers.topics.corpus import training_examples
    from handlers.topics.features import Vectorizer
    from handlers.topics.linear import SoftmaxModel
    from handlers.topics.text import tokens

    model = suggester.model()
    examples = training_examples(parse_organisation(DEFAULT_ORG_FILE.read_text("utf-8")))
    texts = [example.text for example in examples]
    k = len(model.topic_ids)
    reference = SoftmaxModel(
        np.array(model.weights, dtype=np.float32).astype(np.float64).reshape(-1, k),
        np.array(model.bias, dtype=np.float64))
    vocabulary = {term: i for i, term in enumerate(model.terms())}
    expected = reference.probabilities(
        Vectorizer(vocabulary, np.array(model.idf, dtype=np.float64)).transform(
            [tokens(text) for text in texts]))
    got = np.array(model.probabilities(texts))
    assert got.shape == expected.shape == (len(examples), k) and len(examples) > 500
    assert np.abs(got - expected).max() < 1e-12
    assert (np.argsort(-got, axis=1, kind="stable")
            == np.argsort(-expected, axis=1, kind="stable")).all()
    assert (np.round(got, 4) == np.round(expected, 4)).all()
    # The model before it was made compact kept the trained float64 weights: rounding them to
    # float32 (as its cache always did) changes no top topic on the seed corpus.
    from handlers.topics.linear import train

    documents = [tokens(text) for text in texts]
    vectorizer = Vectorizer.fit(documents)
    labels = np.array([model.topic_ids.index(e.topic_id) for e in examples])
    before = train(vectorizer.transform(documents), labels, k).probabilities(
        vectorizer.transform(documents))
    assert (before.argmax(axis=1) == got.argmax(axis=1)).all()
    # And the suggester's answers are those rankings and rounded scores.
    first = suggester.suggest_many(texts[:50])
    for row, suggestions in zip(expected[:50], first, strict=True):
        order = np.argsort(-row, kind="stable")
        assert [(s.topic_id, s.score) for s in suggestions] == [
            (model.topic_ids[i], round(float(row[i]), 4)) for i in order]


def test_a_topic_added_in_the_organisation_file_is_suggested_without_code():
    text = DEFAULT_ORG_FILE.read_text("utf-8").replace(
        '[[topics]]\nid = "other"',
        '[[topics]]\nid = "funeral"\ntitle = "Ритуальные услуги"\ntitle_en = "Funeral services"\n'
        'description = "кладбище, захоронение, похороны, ритуальное агентство"\n'
        'phrases = ["на кладбище не дают место для захоронения", "ритуальное агентство '
        'завысило цены на похороны", "ограду на могиле сломали", "кладбище не чистят от '
        'снега, не пройти к могилам"]\n\n[[topics]]\nid = "other"')
    text = text.replace('topics = ["other"]', 'topics = ["other", "funeral"]')
    org = parse_organisation(text)
    suggester = LinearTopicSuggester(org)
    assert suggester.suggest("где получить место на кладбище, умерла мама")[0].topic_id == (
        "funeral")


# ---------------------------------------------------------------------------------------------
# mcu topics …


@pytest.fixture
def env(monkeypatch, tmp_path, sqlite_url):
    monkeypatch.setenv("MCU_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "data"))


def test_cli_suggest_reads_lines_and_writes_one_json_object_each(env, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(
        "не горит фонарь у подъезда\nяма на дороге у дома 5\n\nхочу оформить опеку над внуком\n"))
    assert main(["topics", "suggest"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # an empty line still gets its answer: the order is kept
    answers = [json.loads(line) for line in lines]
    assert [a["topics"][0]["id"] for a in answers[:2]] == ["energy", "roads"]
    assert answers[3]["topics"][0]["id"] == "guardianship"
    for answer in answers:
        assert list(answer) == ["topics"] and len(answer["topics"]) >= 3
        assert all(set(t) == {"id", "score"} for t in answer["topics"])
        scores = [t["score"] for t in answer["topics"]]
        assert scores == sorted(scores, reverse=True)


def test_cli_suggest_one_text_and_usage_errors(env, capsys):
    assert main(["topics", "suggest", "--text", "мусорка переполнена", "--top", "3"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["topics"][0]["id"] == "waste" and len(answer["topics"]) == 3
    assert main(["topics", "suggest", "--text", "x", "--top", "1"]) == 2
    assert main(["topics", "eval", "/nonexistent/eval.tsv"]) == 2
    assert main(["topics"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("mcu topics") for line in errors)


def test_cli_eval_prints_accuracy_and_refuses_unknown_topics(env, tmp_path, capsys):
    sample = tmp_path / "eval.tsv"
    sample.write_text("id\ttopic\ttext\n1\troads\tяма на дороге\n2\tenergy\tне горит фонарь\n",
                      encoding="utf-8")
    assert main(["topics", "eval", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "top-1: 100.0% (2/2)" in out and "top-3: 100.0% (2/2)" in out
    sample.write_text("id\ttopic\ttext\n1\tparking\tмашины на газоне\n", encoding="utf-8")
    assert main(["topics", "eval", str(sample)]) == 2
    assert "parking" in capsys.readouterr().err


async def run(argv: list[str]) -> int:
    # The CLI runs its own event loop (asyncio.run); keep it off the test's loop.
    return await asyncio.to_thread(main, argv)


async def test_corrections_export_writes_the_heads_corrections(env, services, tmp_path, capsys):
    async with services.sessions() as session, session.begin():
        items = []
        for text, topic, suggested in (("Фонарь над стадионом не горит", "energy", "energy"),
                                       ("Каток не залит", "housing", "sport"),
                                       ("Яма у школы", "roads", "roads")):
            items.append(await register_item(session, services, NewItem(
                kind=Kind.MESSAGE, channel="telegram", topic=topic, text=text,
                received_at=services.now(), suggested_topic=suggested,
                suggestion_score=0.5), Actor.CITIZEN))
        session.add(TopicCorrection(item_id=items[0].id, from_topic="energy", to_topic="sport",
                                    at=services.now()))
        # Corrected twice, back where it was: no correction to learn from.
        session.add_all([TopicCorrection(item_id=items[2].id, from_topic="roads",
                                         to_topic="education", at=services.now()),
                         TopicCorrection(item_id=items[2].id, from_topic="education",
                                         to_topic="roads", at=services.now())])
    out = tmp_path / "corrections.tsv"
    assert await run(["topics", "export-corrections", "--out", str(out)]) == 0
    lines = out.read_text("utf-8").splitlines()
    assert lines == ["id\ttopic\ttext\tprevious\tsource",
                     f"{items[0].number}\tsport\tФонарь над стадионом не горит\tenergy\tredirect"]
    # The same file is an evaluation file: it can be scored (and added to the seed).
    assert await run(["topics", "eval", str(out)]) == 0
    capsys.readouterr()
    assert await run(["topics", "export-corrections", "--with-choices"]) == 0
    exported = capsys.readouterr().out.splitlines()
    assert f"{items[1].number}\thousing\tКаток не залит\tsport\tchoice" in exported
    async with services.sessions() as session:
        assert len((await session.scalars(select(Item))).all()) == 3


def test_seed_has_forty_phrasings_for_every_topic():
    from handlers.topics.corpus import SEED_DIR, read_seed_file

    org = parse_organisation(DEFAULT_ORG_FILE.read_text("utf-8"))
    for topic in org.topics:
        path = Path(SEED_DIR / f"{topic.id}.txt")
        phrases = [line for line in path.read_text("utf-8").splitlines()
                   if line.strip() and not line.startswith(("#", "keywords:"))]
        assert len(phrases) >= 40, topic.id
        assert len(read_seed_file(path, topic.id)) > len(phrases)  # keywords too
