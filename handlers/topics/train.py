"""Training in a process of its own: `python -m handlers.topics.train MODEL_FILE`, with the
topics and examples as JSON on stdin ({"topics": [...], "examples": [[topic, text], ...]}).

The bot's process only loads the file this writes. numpy and training's arrays stay here:
trained in the bot's process they kept ~45 MB of its resident memory until the next restart
(bench/memory.py, first start with an empty cache).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from handlers.topics.corpus import Example
from handlers.topics.suggester import Model


def main(argv: list[str]) -> int:
    [target] = argv
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    examples = [Example(topic, text) for topic, text in request["examples"]]
    Model.fit(examples, list(request["topics"])).save(Path(target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
