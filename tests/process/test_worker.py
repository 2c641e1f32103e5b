"""What a real worker builds, checked from outside, so that a BentoML or uvicorn upgrade that turns
one of our fixes into a silent no-op fails here instead of bringing the GC stalls back.

- the middleware stack of the app a worker serves (built as the worker builds it);
- live event-loop timers in a running worker after many requests (BentoML's timeout middleware
  left one per request alive for 10 s);
- the protocol uvicorn uses, and the metrics directory of each server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEY, tx_body
from tests.process.conftest import ROOT, server_env

pytestmark = pytest.mark.process
H = {"X-API-Key": KEY}

_STACK = """
import json
from _bentoml_impl.loader import load
import uvicorn.config
svc = load("service:FraudScorer", standalone_load=True)
app = svc.to_asgi(is_main=True)
node, stack = app.build_middleware_stack(), []
while node is not None:
    entry = {"class": type(node).__module__ + "." + type(node).__qualname__}
    excluded = getattr(node, "excluded_urls", None)
    if excluded is not None:
        entry["excluded"] = [u for u in ("/fraud_score", "/fraud_score/batch", "/v1/fraud-score",
                                         "/model_info") if excluded.url_disabled("http://h" + u)]
    stack.append(entry)
    node = getattr(node, "app", None)
print(json.dumps({"stack": stack, "protocol": uvicorn.config.HTTP_PROTOCOLS["auto"]}))
"""

# Injected into the server's processes (PYTHONPATH): on SIGUSR2 a worker writes how many event-loop
# timers are alive in it. Test instrumentation only; the service's code is unchanged.
_SITECUSTOMIZE = """
import asyncio, gc, os, signal
def _count_timers(signum, frame):
    # live timers only: asyncio keeps cancelled ones in its heap until they are half of it
    n = sum(1 for o in gc.get_objects() if type(o).__name__ == "TimerHandle" and not o.cancelled())
    loop = type(asyncio.get_running_loop())
    with open(os.path.join(os.environ["TIMER_DUMP_DIR"], str(os.getpid())), "w") as fh:
        fh.write(f"{n} {loop.__module__}.{loop.__qualname__}")
signal.signal(signal.SIGUSR2, _count_timers)
"""


def test_the_worker_middleware_stack_has_our_fixes_and_no_raw_path_metrics(trained):
    env = server_env(FRAUD_MODEL_TAG=trained.tag)
    done = subprocess.run([sys.executable, "-c", _STACK], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    built = json.loads(done.stdout.strip().splitlines()[-1])
    classes = [m["class"] for m in built["stack"]]
    assert "fraudscore.ops.bentoml_fixes.TimeoutMiddleware" in classes, classes
    assert "bentoml._internal.server.http.traffic.TimeoutMiddleware" not in classes  # the leaky one
    assert not any("TrafficMetricsMiddleware" in c for c in classes), classes  # raw-path labels
    assert not any("MaxConcurrencyMiddleware" in c for c in classes), classes  # slots held by uploads
    assert "fraudscore.edge.app.Edge" in classes
    assert classes.index("fraudscore.ops.bentoml_fixes.TimeoutMiddleware") < classes.index(
        "fraudscore.edge.app.Edge")  # the timeout wraps the edge
    otel = [m for m in built["stack"] if "excluded" in m]
    assert otel and set(otel[0]["excluded"]) == {"/fraud_score", "/fraud_score/batch", "/v1/fraud-score"}
    assert built["protocol"] == "fraudscore.edge.protocol:HardenedProtocol"


def _worker_pids(proc: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [int(p) for p in children
            if "_bentoml_impl.worker" in Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")]


def test_no_timer_outlives_its_request_and_the_loop_is_asyncio_in_a_running_worker(
        serve, trained, stand_in, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    srv = serve(FRAUD_MODEL_TAG=trained.tag, workers=2, PYTHONPATH=pythonpath, TIMER_DUMP_DIR=str(dumps))
    body = tx_body(stand_in, 0)
    with httpx.Client(base_url=srv.url, headers=H, timeout=30) as c:
        for _ in range(2_000):  # all within traffic.timeout (10 s): leaked timers would all be alive
            assert c.post("/fraud_score", json=body).status_code == 200
    workers = _worker_pids(srv.proc)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while len(list(dumps.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    dumped = {p.name: p.read_text().split() for p in dumps.iterdir()}
    counts = {pid: int(n) for pid, (n, _) in dumped.items()}
    assert len(counts) == 2 and max(counts.values()) < 50, counts  # a leak would leave ~1,000 each
    # FRAUD_EVENT_LOOP's default: asyncio's selector loop, not uvloop (which uvicorn would pick)
    assert {loop for _, loop in dumped.values()} == {"asyncio.unix_events._UnixSelectorEventLoop"}, dumped


def _counter(text: str, route: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("fraud_http_requests_total{") and f'route="{route}"' in ln)


def test_two_servers_on_one_bentoml_home_keep_their_own_metrics(serve, trained, stand_in):
    first = serve("first", FRAUD_MODEL_TAG=trained.tag, workers=2)
    body = tx_body(stand_in, 0)
    with httpx.Client(base_url=first.url, headers=H, timeout=30) as c:
        for _ in range(7):
            assert c.post("/fraud_score", json=body).status_code == 200
        second = serve("second", FRAUD_MODEL_TAG=trained.tag, workers=2)  # empties the shared dir
        with httpx.Client(base_url=second.url, headers=H, timeout=30) as c2:
            for _ in range(3):
                assert c2.post("/fraud_score", json=body).status_code == 200
            assert _counter(c2.get("/metrics").text, "/fraud_score") == 3
        assert _counter(c.get("/metrics").text, "/fraud_score") == 7


def test_an_unknown_setting_stops_the_start_naming_it(trained, tmp_path):
    from fraudscore.devtools import free_port
    from tests.process.conftest import BENTOML, HOST

    env = server_env(FRAUD_MODEL_TAG=trained.tag, FRAUD_DECISION_TRESHOLD="60")
    done = subprocess.run([BENTOML, "serve", "service:FraudScorer", "--working-dir", str(ROOT),
                           "--host", HOST,
                           "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "FRAUD_DECISION_TRESHOLD (did you mean FRAUD_DECISION_THRESHOLD?)" in done.stdout + done.stderr
