"""``python -m fraudscore report``: decision quality per model version, the shadow model against
the primary, and drift against the training reference, over a sliding window (``make report``).

    python -m fraudscore report [--store URL] [--window 30d] [--format table|json] [--drift-rows N]

Exit status: 0 printed, 2 bad arguments, or a store that cannot be read (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..settings import ConfigError, get_settings
from .drift_report import TOP, band, drift, model_reference
from .engine import create_store_engine, describe_error, parse_url, redact, sqlite_path
from .migrate import current
from .quality import quality, shadow_comparison

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` -> a timedelta (argparse type)."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*([mhdw])\s*", text)
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError("must be a positive number with a unit m, h, d or w, e.g. 30d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _delay(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.0f} s"


def collect(url: str, window: timedelta, now: datetime | None = None,
            reference: Callable[[str], dict[str, Any] | None] = model_reference,
            drift_rows: int = 100_000) -> dict[str, Any]:
    """Everything the report prints, as data (raises SQLAlchemyError, LookupError); ``reference``
    gives a model version's drift reference; drift reads ``drift_rows`` decisions a version
    (0: no drift)."""
    path = sqlite_path(parse_url(url))
    if path is not None and not path.exists():
        raise LookupError("no such SQLite file (the service creates it on its first start)")
    engine = create_store_engine(url)
    try:
        if current(engine) is None:
            raise LookupError("the store has no tables yet: run `python -m fraudscore migrate` "
                              "(the service does it when it starts)")
        now = (now or datetime.now(UTC)).astimezone(UTC)
        return {"store": redact(url), "window_days": round(window.total_seconds() / 86_400, 3),
                "now": now.isoformat(timespec="seconds"),
                "quality": quality(engine, window, now), "shadow": shadow_comparison(engine, window, now),
                "drift": drift(engine, window, now, reference, drift_rows) if drift_rows else []}
    finally:
        engine.dispose()


def print_tables(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    # a pipe or a file gets the whole table, however wide (rich would fit 80 columns)
    console = Console(width=None if sys.stdout.isatty() else 400)
    q = Table(title=f"Decision quality, {data['window_days']:g} days to {data['now']} ({data['store']})")
    for col in ("model version", "role", "decisions", "alert rate", "labelled", "frauds", "precision",
                "recall", "recall+review", "label delay p50", "p90"):
        q.add_column(col, justify="left" if col in ("model version", "role") else "right", no_wrap=True)
    for r in data["quality"]:
        q.add_row(r["model_version"], r["role"], f"{r['decisions']:,}", _pct(r["alert_rate"]),
                  f"{r['labelled']:,}", f"{r['labelled_frauds']:,}", _pct(r["precision"]), _pct(r["recall"]),
                  _pct(r["recall_with_review"]), _delay(r["label_delay_p50_s"]),
                  _delay(r["label_delay_p90_s"]))
    console.print(q if data["quality"] else "No decisions in the window.")
    _print_shadow(console, data["shadow"])
    _print_drift(console, data["drift"])


def _print_shadow(console: Any, shadow: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not shadow:
        console.print("No shadow model scored transactions in the window.")
        return
    s = Table(title="Shadow vs primary on the same transactions "
                    "(precision / recall at each model's block threshold)")
    for col in ("primary", "shadow", "pairs", "agreement", "mean |score delta|", "mean delta",
                "labelled", "frauds", "precision P / S", "recall P / S"):
        s.add_column(col, justify="left" if col in ("primary", "shadow") else "right", no_wrap=True)
    for r in shadow:
        s.add_row(r["primary_version"], r["shadow_version"], f"{r['pairs']:,}", _pct(r["agreement"]),
                  f"{r['mean_abs_score_delta']:.2f}", f"{r['mean_score_delta']:+.2f}", f"{r['labelled']:,}",
                  f"{r['labelled_frauds']:,}",
                  f"{_pct(r['primary_precision'])} / {_pct(r['shadow_precision'])}",
                  f"{_pct(r['primary_recall'])} / {_pct(r['shadow_recall'])}")
    console.print(s)


def _print_drift(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not rows:
        return
    t = Table(title="Drift against the training reference (PSI: < 0.1 stable, 0.1-0.25 moderate, "
                    "> 0.25 major; the most recent decisions of each version)")
    for col in ("model version", "decisions read", "score PSI", f"top {TOP} features by PSI"):
        t.add_column(col, justify="left" if col != "decisions read" else "right", no_wrap=True)
    for r in rows:
        if "unavailable" in r:
            t.add_row(r["model_version"], f"{r.get('rows', 0):,}", "-", r["unavailable"])
            continue
        top = ", ".join(f"{k} {v:.3f}" for k, v in list(r["features"].items())[:TOP])
        t.add_row(r["model_version"], f"{r['rows']:,}", f"{r['score_psi']:.3f} ({band(r['score_psi'])})",
                  f"{top} (highest: {band(next(iter(r['features'].values())))})")
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fraudscore report", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="store URL (default: FRAUD_STORE_URL, else SQLite in FRAUD_DATA_DIR)")
    p.add_argument("--window", type=parse_window, default=None,
                   help="sliding window, e.g. 30d, 12h (default: FRAUD_QUALITY_WINDOW_DAYS)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--drift-rows", type=int, default=100_000, metavar="N",
                   help="drift: the most recent N primary decisions of each model version (default 100,000, "
                        "about 2-3 s; 0: no drift)")
    args = p.parse_args(argv)
    if args.drift_rows < 0:
        p.error("--drift-rows must be >= 0")
    shown = "the store"
    try:
        settings = get_settings()
        url = args.store or settings.resolved_store_url()
        parse_url(url, "--store" if args.store else "FRAUD_STORE_URL")
        shown = redact(url)
        window = args.window or timedelta(days=settings.quality_window_days)
        data = collect(url, window, drift_rows=args.drift_rows)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"error: {shown}: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"error: cannot read {shown}: {describe_error(exc)}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(data, indent=1))
    else:
        print_tables(data)
    return 0
