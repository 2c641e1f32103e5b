"""Large requests share a worker's event loop with single transactions (scoring/lane.py)."""

import asyncio
import socket
import time

import pytest
import uvloop

from fraudscore.schemas import TransactionIn
from fraudscore.scoring.batching import MERGE_BELOW_ROWS
from fraudscore.scoring.lane import yield_to_io
from fraudscore.scoring.pipeline import CHUNK_ROWS, ScoringPipeline
from fraudscore.settings import Settings
from tests.conftest import tx_body

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def _pipeline(trained, **kw) -> ScoringPipeline:
    return ScoringPipeline.load(Settings(_env_file=None, model_tag=trained.tag, **kw))


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_large_requests_in_flight_take_turns_with_the_sockets(trained, stand_in, loop_name, request):
    """Three large requests at once: between any two pieces of their work the loop polls its
    sockets, so a single transaction that arrives waits for one piece, never for a piece of every
    large request in flight (their pauses ended in the same turn, and their pieces ran back to
    back: a single's p99 was 6-7 times its p99 alone)."""
    pipeline = _pipeline(trained)
    scorer = pipeline.scorer
    verdicts = scorer.verdicts
    order: list[str] = []
    a, b = socket.socketpair()
    a.setblocking(False)
    request.addfinalizer(a.close)
    request.addfinalizer(b.close)

    def piece(*args, **kw):
        order.append("piece")
        b.send(b"x")  # a single transaction arrives while the piece runs
        return verdicts(*args, **kw)

    scorer.verdicts = piece
    pieces = -(-MERGE_BELOW_ROWS // CHUNK_ROWS)  # the fewest rows that take the bulk path
    n = pieces * CHUNK_ROWS

    async def run() -> list[list[dict]]:
        loop = asyncio.get_running_loop()
        loop.add_reader(a, lambda: (a.recv(4096), order.append("io")))
        try:
            rows = [TransactionIn(**tx_body(stand_in, i, transaction_id=str(i))) for i in range(n)]
            return await asyncio.gather(*(pipeline.score_transactions(rows) for _ in range(3)))
        finally:
            loop.remove_reader(a)

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        answers = runner.run(run())
    assert [[v["transaction_id"] for v in answer] for answer in answers] == [[str(i) for i in range(n)]] * 3
    assert order.count("piece") == 3 * pieces
    back_to_back = [i for i in range(1, len(order)) if order[i] == order[i - 1] == "piece"]
    assert back_to_back == [], order


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_bulk_pauses_serve_waiting_sockets_first_and_never_sleep(loop_name):
    """Between two pieces of a large request the loop reads the sockets that became readable, and
    runs their callbacks, before the next piece; on an idle loop a pause costs no sleep (a 0.1 ms
    timer used to cost 1 ms each: epoll's resolution)."""

    async def run() -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        a, b = socket.socketpair()
        a.setblocking(False)
        loop.add_reader(a, lambda: (a.recv(16), order.append("io")))
        try:
            b.send(b"x")  # a single transaction arrives while a piece of bulk work runs
            await yield_to_io()
            order.append("bulk")
        finally:
            loop.remove_reader(a)
            a.close()
            b.close()
        started = time.perf_counter()
        for _ in range(100):
            await yield_to_io()
        return order, time.perf_counter() - started

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        order, idle = runner.run(run())
    if loop_name == "asyncio":  # the default loop; uvloop (libuv) runs due timers before polling
        assert order == ["io", "bulk"]
    assert idle < 0.05  # 100 pauses: at 1 ms each this was >= 0.1 s
