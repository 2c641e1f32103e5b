"""Logging helpers: one line per interval for events that can come in floods."""

from __future__ import annotations

import logging
import time


class Throttled:
    """``emit(msg, *args)`` logs at most once per ``interval_s``; the next line says how many
    were held back. For client-caused and outage events, which an attacker or a dead dependency
    could otherwise turn into thousands of lines a second."""

    def __init__(self, logger: logging.Logger, level: int, interval_s: float) -> None:
        self._log, self._level, self._interval = logger, level, interval_s
        self._next = 0.0
        self._held = 0

    def emit(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        self._next = now + self._interval
        if self._held:
            msg += " (and %d more like it in the last %.0f s)"
            args = (*args, self._held, self._interval)
            self._held = 0
        self._log.log(self._level, msg, *args)
