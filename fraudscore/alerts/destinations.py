"""What each destination receives: the bytes of the body and the headers, per alert or per digest.

Generic webhook: a JSON object per alert, signed (signing.py), with the alert id as idempotency key.
Slack incoming webhook: ``{"text": ...}``, readable in a channel; past the per-minute budget one
digest message stands for many alerts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .signing import HEADER as SIGNATURE_HEADER
from .signing import sign

ALERT_ID_HEADER = "X-Fraud-Alert-Id"
USER_AGENT = "fraudscore-alerts/1"
DIGEST_TOP = 5


def link(template: str | None, transaction_id: str) -> str | None:
    return template.format(transaction_id=transaction_id) if template else None


def webhook_body(alert_id: str, fields: dict[str, Any], link_template: str | None) -> bytes:
    """The JSON body: alert_id, transaction_id, decision, score, probability, threshold,
    model_version, reasons, decided_at, link (null without FRAUD_ALERT_LINK_TEMPLATE)."""
    doc = {"alert_id": alert_id, **{k: fields.get(k) for k in (
        "transaction_id", "decision", "score", "probability", "threshold", "model_version", "reasons",
        "decided_at")}, "link": link(link_template, fields["transaction_id"])}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_headers(alert_id: str, body: bytes, secret: str) -> dict[str, str]:
    """Signed now: a retry carries a fresh timestamp (and signature) and the same alert id."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, ALERT_ID_HEADER: alert_id,
            SIGNATURE_HEADER: sign(secret, body)}


def _reasons(reasons: Any, top: int = 3) -> str:
    out = []
    for r in (reasons or [])[:top]:
        if isinstance(r, dict) and "feature" in r:
            out.append(f"{r['feature']}={r.get('value')} ({float(r.get('contribution', 0)):+.3f})")
    return ", ".join(out) or "none recorded"


def _escape(text: str) -> str:
    # Slack's three control characters; a transaction id is the client's text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(fields: dict[str, Any], link_template: str | None) -> str:
    tx = _escape(str(fields["transaction_id"]))
    lines = [f":rotating_light: Fraud alert: *{fields['decision']}*, score {fields['score']}/100 "
             f"(threshold {fields['threshold']})",
             f"Transaction: `{tx}`",
             f"Top reasons: {_escape(_reasons(fields.get('reasons')))}",
             f"Model: {_escape(str(fields['model_version']))} | decided {fields.get('decided_at')}"]
    url = link(link_template, str(fields["transaction_id"]))
    if url:
        lines.append(f"<{url}|Open the decision>")
    return "\n".join(lines)


def digest_text(alerts: Sequence[dict[str, Any]], link_template: str | None) -> str:
    """"N transactions blocked in the last minute; top 5: ..." (highest scores first)."""
    blocked = sum(1 for a in alerts if a.get("decision") == "block")
    what = (f"{len(alerts)} transactions blocked" if blocked == len(alerts)
            else f"{len(alerts)} transactions alerted ({blocked} blocked)")
    top = sorted(alerts, key=lambda a: -int(a.get("score", 0)))[:DIGEST_TOP]
    items = []
    for a in top:
        tx = str(a["transaction_id"])
        url = link(link_template, tx)
        shown = f"<{url}|{_escape(tx)}>" if url else f"`{_escape(tx)}`"
        items.append(f"{shown} ({a['score']})")
    return (f":rotating_light: {what} in the last minute; top {len(top)}: " + ", ".join(items)
            + " (alert budget reached: one digest a minute)")


def slack_body(text: str) -> bytes:
    return json.dumps({"text": text}, ensure_ascii=False).encode()


SLACK_HEADERS = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
