"""What an idle `mcu run` carries: the heavy libraries load only where they are used
(spreadsheets, charts, the topic model, migrations, PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("openpyxl", "matplotlib", "numpy", "alembic", "asyncpg")

START_UP = """
import sys
import bot.bootstrap, bot.cli, bot.telegram, bot.vk, handlers.core, scheduler.jobs, \\
    scheduler.runner
from storage.migrate import upgrade
upgrade(sys.argv[1])  # already at the latest revision: nothing to import for it
print(" ".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def test_start_up_imports_no_heavy_library(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'mcu.sqlite3'}"
    from storage.migrate import is_up_to_date, upgrade

    upgrade(url)  # a first start migrates (alembic in that process only)
    assert is_up_to_date(url)
    result = subprocess.run([sys.executable, "-c", START_UP.format(heavy=HEAVY), url],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "", f"imported at start-up: {result.stdout.strip()}"


def test_a_database_behind_the_files_is_not_up_to_date(tmp_path):
    from storage.migrate import head_revisions, is_up_to_date, upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    assert not is_up_to_date(url)  # no file yet
    upgrade(url, "0001")
    assert not is_up_to_date(url)
    upgrade(url)
    assert is_up_to_date(url) and head_revisions()


LOADED_MODEL = """
import sys
from pathlib import Path
from bot.settings import DEFAULT_ORG_FILE
from handlers.org import load_organisation
from handlers.topics.suggester import LinearTopicSuggester
suggester = LinearTopicSuggester(load_organisation(DEFAULT_ORG_FILE), cache_dir=Path(sys.argv[1]))
suggester.warm_up()
print(suggester.suggest("яма на дороге")[0].topic_id, "numpy" in sys.modules)
"""


def test_training_the_topic_model_leaves_no_numpy_in_the_bot(tmp_path):
    """With a cache, the model is trained in a process of its own: the bot only loads it."""
    result = subprocess.run([sys.executable, "-c", LOADED_MODEL, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=True)
    assert result.stdout.split() == ["roads", "False"]
    assert len(list(tmp_path.glob("topics-model-*"))) == 1


def test_the_topic_model_loaded_from_its_cache_needs_no_numpy(tmp_path, monkeypatch):
    """numpy (~15 MB resident) is for training; a bot whose model is cached never loads it."""
    import handlers.topics.suggester as module
    from bot.settings import DEFAULT_ORG_FILE
    from handlers.org import load_organisation
    from handlers.topics.suggester import LinearTopicSuggester

    monkeypatch.setattr(module, "_BUILT", {})  # trained here, so written to the cache
    LinearTopicSuggester(load_organisation(DEFAULT_ORG_FILE), cache_dir=tmp_path).warm_up()
    result = subprocess.run([sys.executable, "-c", LOADED_MODEL, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == ["roads", "False"]


def test_the_production_calendar_needs_no_holidays_package():
    """The calendar reads its data file: `holidays` loads some 300 country modules (+17 MB)."""
    code = ("import sys; from datetime import date; from zoneinfo import ZoneInfo; "
            "from handlers.rules.calendar import WorkCalendar; "
            "c = WorkCalendar(ZoneInfo('Asia/Sakhalin')); "
            "print(c.is_working_day(date(2026, 1, 5)), c.is_working_day(date(2026, 1, 12)), "
            "'holidays' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.split() == ["False", "True", "False"]
