"""``python -m fraudscore COMMAND ...``: the project's command-line tools, one module each.

Each command lives in its own module as ``main(argv) -> int`` and is imported only when it runs,
so one command's dependencies (pyarrow, pyspark, a database driver) never slow or break another.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module with main(argv) -> exit status, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": ("fraudscore.store.migrate", "bring the decision store's schema to this version"),
    "report": ("fraudscore.store.report", "decision quality per model version; shadow vs primary"),
    "score": ("fraudscore.offline.score", "score a CSV or Parquet file with the served model"),
    "backtest": ("fraudscore.offline.backtest", "thresholds on labelled data: costs, alert rates, a choice"),
    "promote": ("fraudscore.training.promote", "gate a candidate model and make it the production one"),
    "models": ("fraudscore.stages", "the model store's entries and their stage (--production: its tag)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max((len(c) for c in COMMANDS), default=0)
        lines = [f"  {name:{width}s}  {help_}" for name, (_, help_) in sorted(COMMANDS.items())]
        print("usage: python -m fraudscore COMMAND [options]   (COMMAND --help for its options)\n\n"
              "commands:\n" + "\n".join(lines), file=sys.stderr if argv and argv[0] not in ("-h", "--help")
              else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, _ = COMMANDS[argv[0]]
    return importlib.import_module(module).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
