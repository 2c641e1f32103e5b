"""Model stages: ``candidate`` (every new entry: trained or imported) -> ``production`` (through
``python -m fraudscore promote``, fraudscore/training/promote.py) -> ``retired`` (when another
entry is promoted).

Where the stage lives: BentoML writes a model's labels into its ``model.yaml`` once, at saving, and
offers no API to change them, so the stage is not a label. It is a small file, ``promotion.json``,
in the entry's own folder: it travels with the entry (``bentoml models export`` / ``import``, and
``bentoml build`` copies the folder into the bento), reading it is one small file, and an entry
without it is a candidate. The record holds the SHA-256 of every file of the entry (the checksums
the entry was written with): a record that does not match its entry counts for nothing (the entry
is a candidate), and :func:`production_tag` also re-hashes the files, so a promotion cannot be
carried over to altered files. The record is evidence of the gate, not a signature: anyone who
can write the model store can write it.

``python -m fraudscore models`` lists the entries with their stage; ``--production`` prints the
pinned tag of the production entry (exit 1 when there is none).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .artifact import MODEL_NAME, ArtifactError, sha256_file

PROMOTION_FILE = "promotion.json"
CANDIDATE, PRODUCTION, RETIRED = "candidate", "production", "retired"


class NoProductionModel(RuntimeError):
    """No entry of the store is in production (or its record does not match it)."""


@dataclass(frozen=True)
class Entry:
    tag: str
    path: Path
    stage: str
    metadata: dict[str, Any]
    record: dict[str, Any] | None  # promotion.json, when it matches the entry
    problem: str | None = None  # why a promotion.json present was not believed


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _read_record(path: Path, checksums: Any) -> tuple[dict[str, Any] | None, str | None]:
    file = path / PROMOTION_FILE
    if not file.exists():
        return None, None
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError):
        return None, f"{PROMOTION_FILE} is unreadable"
    if not isinstance(record, dict) or record.get("stage") not in (PRODUCTION, RETIRED):
        return None, f"{PROMOTION_FILE} names no stage"
    if record.get("checksums") != checksums:
        return None, f"{PROMOTION_FILE} was written for other files than this entry's"
    return record, None


def stage_at(path: Path, checksums: Any) -> str:
    """The stage of the entry in folder ``path`` written with ``checksums`` (its metadata's),
    read now: one small file, so a server reports a promotion or retirement made while it runs."""
    record, _ = _read_record(path, checksums)
    return record["stage"] if record else CANDIDATE


def entry(model: Any) -> Entry:
    """The stage of a ``bentoml.models`` model (a candidate unless a matching record says else)."""
    metadata = dict(model.info.metadata)
    record, problem = _read_record(Path(model.path), metadata.get("checksums"))
    stage = record["stage"] if record else CANDIDATE
    return Entry(str(model.tag), Path(model.path), stage, metadata, record, problem)


def get(tag: str) -> Entry:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return entry(bentoml.models.get(tag))
    except NotFound:
        raise ArtifactError(f"model {tag!r} is not in the model store "
                            f"({os.environ.get('BENTOML_HOME', '~/bentoml')})") from None


def entries() -> list[Entry]:
    """Every ``fraud_detector`` entry of the store, newest first."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        found = bentoml.models.list(MODEL_NAME)
    except NotFound:  # no entry of that name at all
        return []
    models = sorted(found, key=lambda m: m.info.creation_time, reverse=True)
    return [entry(m) for m in models]


def _write(path: Path, record: dict[str, Any]) -> None:
    tmp = path / f".{PROMOTION_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path / PROMOTION_FILE)


def promote(tag: str, gate: dict[str, Any]) -> list[str]:
    """Record ``tag`` as the production entry with the gate's evidence; every other production
    entry becomes retired. Returns the tags retired."""
    target = get(tag)
    record = {"stage": PRODUCTION, "tag": target.tag, "promoted_at": _now(), "gate": gate,
              "checksums": target.metadata.get("checksums")}
    retired = []
    for other in entries():
        if other.stage == PRODUCTION and other.tag != target.tag and other.record is not None:
            _write(other.path, {**other.record, "stage": RETIRED, "retired_at": record["promoted_at"],
                                "superseded_by": target.tag})
            retired.append(other.tag)
    _write(target.path, record)
    return retired


def verify_files(e: Entry) -> None:
    """Re-hash every file the entry was written with; :class:`ArtifactError` on any difference."""
    checksums = e.metadata.get("checksums")
    if not isinstance(checksums, dict) or not checksums:
        raise ArtifactError(f"model {e.tag} was not written by this project's train.py")
    for name, digest in checksums.items():
        try:
            actual = sha256_file(e.path / name)
        except OSError:
            raise ArtifactError(f"model {e.tag} is missing {name}") from None
        if actual != digest:
            raise ArtifactError(f"model {e.tag}: checksum mismatch for {name}")


def production_tag(tag: str | None = None) -> str:
    """The pinned tag of the production entry (the most recently promoted, should the store hold
    several: e.g. imported from elsewhere), its files verified. With ``tag``: that entry, which
    must be in production. :class:`NoProductionModel` names what is missing."""
    if tag:
        chosen = get(tag)
        if chosen.stage != PRODUCTION:
            why = f" ({chosen.problem})" if chosen.problem else ""
            raise NoProductionModel(f"model {chosen.tag} is a {chosen.stage}, not in production{why}: "
                                    f"run `make promote TAG={chosen.tag}`")
    else:
        live = [e for e in entries() if e.stage == PRODUCTION]
        if not live:
            raise NoProductionModel(
                "no model in the store is in production: promote one with `make promote TAG=...` "
                "(`python -m fraudscore models` lists them), or import a promoted one with "
                "`bentoml models import`")
        chosen = max(live, key=lambda e: str(e.record.get("promoted_at", "")) if e.record else "")
    verify_files(chosen)
    return chosen.tag


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m fraudscore models",
                                description="The model store's fraud_detector entries and their stage.")
    p.add_argument("--production", action="store_true",
                   help="print only the pinned tag of the production entry; exit 1 when none")
    args = p.parse_args(argv)
    try:
        if args.production:
            print(production_tag())
            return 0
        rows = entries()
    except (NoProductionModel, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"no {MODEL_NAME} entry in the store ({os.environ.get('BENTOML_HOME', '~/bentoml')})")
        return 0
    print(f"{'tag':34s} {'stage':10s} {'auprc':>6s} {'recall':>6s}  data")
    for e in rows:
        metrics = e.metadata.get("metrics", {})
        note = f"  [{e.problem}]" if e.problem else ""
        print(f"{e.tag:34s} {e.stage:10s} {metrics.get('auprc', '-')!s:>6s} "
              f"{metrics.get('recall_at_threshold', '-')!s:>6s}  {e.metadata.get('data_source', '?')}{note}")
    return 0
