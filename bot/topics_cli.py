"""`mcu topics …`: the topic suggester for scripts and checks.

- `mcu topics suggest` reads one text per line on stdin and writes one JSON object per line,
  in order: {"topics": [{"id": "housing", "score": 0.71}, …]}, best first;
- `mcu topics suggest --text "…"` does one text;
- `mcu topics eval FILE.tsv` (columns id, topic, text) prints the accuracy;
- `mcu topics export-corrections` writes the heads' corrections as the same TSV, for retraining.

The suggester itself lives in handlers/topics; this is the edge.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from bot.cli import UsageError, command_group, load_org, load_settings
from bot.settings import Settings
from handlers.topics import MIN_SUGGESTIONS, Suggestion

DEFAULT_TOP = 5


def add_topics_parser(commands: Any) -> None:
    sub = command_group(commands, "topics", "topic suggestion from free Russian text")
    suggest = sub.add_parser("suggest", help="suggest topics: one text per line on stdin, "
                                             "one JSON object per line on stdout")
    suggest.add_argument("--text", help="suggest for this one text instead of reading stdin")
    suggest.add_argument("--top", type=int, default=DEFAULT_TOP,
                         help=f"topics per text, at least {MIN_SUGGESTIONS} "
                              f"(default {DEFAULT_TOP})")
    suggest.set_defaults(func=cmd_suggest)
    evaluate = sub.add_parser("eval", help="accuracy on a labelled TSV file (id, topic, text)")
    evaluate.add_argument("file", help="TSV with a header: id, topic, text")
    evaluate.set_defaults(func=cmd_eval)
    export = sub.add_parser("export-corrections",
                            help="write the topics heads corrected, as TSV (id, topic, text, "
                                 "previous, source)")
    export.add_argument("--out", metavar="FILE", help="write to a file instead of stdout")
    export.add_argument("--with-choices", action="store_true",
                        help="also items whose citizen or operator did not take the suggestion")
    export.set_defaults(func=cmd_export)


def build_suggester(settings: Settings) -> Any:
    from handlers.topics.suggester import LinearTopicSuggester

    return LinearTopicSuggester(load_org(settings), cache_dir=settings.data_dir / "cache")


def as_json(suggestions: list[Suggestion], top: int) -> str:
    return json.dumps({"topics": [{"id": s.topic_id, "score": round(s.score, 4)}
                                  for s in suggestions[:top]]}, ensure_ascii=False)


def cmd_suggest(args: argparse.Namespace) -> int:
    if args.top < MIN_SUGGESTIONS:
        raise UsageError(f"mcu topics suggest: --top must be at least {MIN_SUGGESTIONS}")
    settings = load_settings()
    suggester = build_suggester(settings)
    if args.text is not None:
        print(as_json(suggester.suggest(args.text), args.top))
        return 0
    suggester.warm_up()
    # Line by line, flushed: a script can feed a pipe and read each answer as it comes.
    for line in sys.stdin:
        sys.stdout.write(as_json(suggester.suggest(line.rstrip("\r\n")), args.top) + "\n")
        sys.stdout.flush()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from handlers.topics.evaluation import EvalFileError, evaluate, read_labelled, report_lines

    settings = load_settings()
    org = load_org(settings)
    try:
        rows = read_labelled(Path(args.file))
    except EvalFileError as exc:
        raise UsageError(f"mcu topics eval: {exc}") from exc
    if not rows:
        raise UsageError(f"mcu topics eval: {args.file}: no labelled messages")
    unknown = sorted({row.topic for row in rows} - set(org.topic_by_id))
    if unknown:
        raise UsageError(f"mcu topics eval: unknown topics {', '.join(unknown)} "
                         "(the ids: mcu org show)")
    print("\n".join(report_lines(evaluate(build_suggester(settings), rows))))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    settings = load_settings()
    rows = asyncio.run(read_corrections(settings, args.with_choices))
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8", newline="") as handle:
                write_tsv(handle, rows)
        except OSError as exc:
            raise UsageError(f"mcu topics export-corrections: {args.out}: "
                             f"{exc.strerror}") from exc
        print(f"{len(rows)} corrections written to {args.out}", file=sys.stderr)
    else:
        write_tsv(sys.stdout, rows)
    return 0


async def read_corrections(settings: Settings, with_choices: bool) -> list[Any]:
    from handlers.topics.corrections import labelled_items
    from storage.db import create_engine, session_factory
    from storage.migrate import upgrade_async

    await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return await labelled_items(session, with_choices=with_choices)
    finally:
        await engine.dispose()


def write_tsv(handle: TextIO, rows: list[Any]) -> None:
    """The evaluation format (id, topic, text) plus where each label came from; a text's tabs
    and line breaks become spaces so that one message stays one line."""
    writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\",
                        lineterminator="\n")
    writer.writerow(["id", "topic", "text", "previous", "source"])
    for row in rows:
        text = " ".join(row.text.split())
        writer.writerow([row.number, row.topic, text, row.previous, row.source])
