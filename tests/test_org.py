"""The organisation file: the shipped Okha structure validates; broken files name the field."""

from __future__ import annotations

import json
import tomllib

import pytest

from bot.cli import main
from bot.settings import DEFAULT_ORG_FILE
from handlers.org import OrgFileError, load_organisation, parse_organisation
from handlers.rules.deadlines import Kind

SHIPPED = DEFAULT_ORG_FILE.read_text(encoding="utf-8")

DECREE_TOPICS = {"education", "healthcare", "social_protection", "transport", "roads", "energy",
                 "housing", "waste", "property", "land", "construction", "trade", "sport",
                 "culture", "guardianship"}


def test_shipped_file_has_the_decree_structure():
    org = load_organisation(DEFAULT_ORG_FILE)
    assert {t.id for t in org.topics} == DECREE_TOPICS | {"other"}
    sector_blocks = [b for b in org.blocks if b.id != "mcu"]
    assert len(sector_blocks) == 14  # decree 2.3 д)
    assert org.block_of_topic["other"].head_role == "chairman"
    assert all(t.id in org.block_of_topic for t in org.topics)
    assert org.working_hours.start.hour == 9 and org.working_hours.end.hour == 18
    # Positions, not people's names.
    assert "Нуйкин" not in SHIPPED and "Минато" not in SHIPPED


def test_per_topic_deadline_override():
    org = load_organisation(DEFAULT_ORG_FILE)
    assert org.policy(Kind.MESSAGE, "housing").answer_working_days == 5
    assert org.policy(Kind.MESSAGE, "culture").answer_working_days == 10
    assert org.policy(Kind.INCIDENT).first_reaction_working_hours == 4


def replace_in(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('topics = ["education", "guardianship"]',
     'topics = ["education", "guardianship", "spaceflight"]',
     "blocks[1].topics[2]: unknown topic 'spaceflight'"),
    ('topics = ["culture", "sport"]', 'topics = ["culture"]', "topics: no block owns sport"),
    ('start = "09:00"', 'start = "19:00"', "working_hours: start must be earlier than end"),
    ("answer_working_days = 10", "answer_working_days = -3",
     "deadlines.message.answer_working_days"),
    ('id = "finance"', 'id = "finance"\nbudget = 5', "blocks[11].budget: unknown field"),
    ('id = "finance"', 'id = "Finance!"', "blocks[11].id: String should match pattern"),
    ("weekdays = [1, 2, 3, 4, 5]", "weekdays = [0, 8]", "working_hours.weekdays"),
    ('topic = "housing"', 'topic = "heating"', "deadline_overrides[0].topic: unknown topic"),
])
def test_broken_file_names_the_field(old: str, new: str, message: str):
    with pytest.raises(OrgFileError) as error:
        parse_organisation(replace_in(SHIPPED, old, new), "okha.toml")
    assert message in str(error.value)


def test_not_toml():
    with pytest.raises(OrgFileError, match="not valid TOML"):
        parse_organisation("this is = = not toml", "x.toml")


def test_duplicate_topic():
    data = tomllib.loads(SHIPPED)
    data["topics"].append(data["topics"][0])
    text = SHIPPED + '\n[[topics]]\nid = "education"\ntitle = "x"\ntitle_en = "x"\n'
    with pytest.raises(OrgFileError, match=r"topics\[16\]: duplicate id 'education'"):
        parse_organisation(text)


def test_cli_org_check_and_show(tmp_path, capsys):
    assert main(["org", "check"]) == 0
    assert "OK" in capsys.readouterr().out
    broken = tmp_path / "broken.toml"
    broken.write_text(replace_in(SHIPPED, 'topics = ["culture", "sport"]', 'topics = ["culture"]'),
                      encoding="utf-8")
    assert main(["org", "check", str(broken)]) == 2
    assert "no block owns sport" in capsys.readouterr().err
    assert main(["org", "check", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["org", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in shown["roles"]} == {
        "curator", "chairman", "im_coordinator", "press", "head", "executor", "operator"}
    assert any(b["id"] == "housing" and "housing" in b["topics"] for b in shown["blocks"])
    assert any(t["id"] == "waste" and t["title"] == "Обращение с ТКО" for t in shown["topics"])
    assert main(["org", "show"]) == 0
    assert "Отдел ЖКХ" in capsys.readouterr().out
