"""A trained topic suggester for tests: trained once per test process (the suggester keeps
built models by content hash), then each test gets a ready instance."""

from __future__ import annotations

from bot.settings import DEFAULT_ORG_FILE
from handlers.org import Organisation, load_organisation
from handlers.topics.suggester import LinearTopicSuggester


def ready_suggester(org: Organisation | None = None) -> LinearTopicSuggester:
    suggester = LinearTopicSuggester(org or load_organisation(DEFAULT_ORG_FILE))
    suggester.warm_up()
    return suggester
