"""Overload shedding: an adaptive limit on requests in progress, driven by queueing delay."""

from fraudscore.edge.admission import LATE_FACTOR, MAX_LIMIT, MIN_LIMIT, MIN_SAMPLES, Admission

MS = 0.001


def _feed(adm: Admission, start: float, seconds: float, rate: int, sojourn: float) -> list[bool]:
    return [adm.admit(sojourn, start + i / rate) for i in range(int(seconds * rate))]


def test_short_waits_keep_every_request_coming_in():
    adm = Admission(target_ms=25, interval_ms=100)
    assert all(_feed(adm, 0.0, 1.0, 1000, 1 * MS))
    assert not adm.overloaded and adm.limit == MAX_LIMIT
    assert adm.arrival()
    for _ in range(MAX_LIMIT):
        adm.received()  # bodies complete: in progress
    assert not adm.arrival()  # the hard ceiling
    for _ in range(MAX_LIMIT):
        adm.done()
    assert adm.in_progress == 0


def test_a_standing_queue_shrinks_the_limit_to_what_drains():
    adm = Admission(target_ms=25, interval_ms=100)
    for _ in range(300):
        assert adm.arrival()
        adm.received()
    for t in range(10):  # every interval the shortest wait is 40 ms: the queue stands
        _feed(adm, t * 0.1, 0.1, 500, 40 * MS)
    assert adm.overloaded and MIN_LIMIT <= adm.limit < 300 * 0.9 ** 5
    assert not adm.arrival()  # in progress (300) above the limit: shed at arrival
    assert adm.admit(40 * MS, 1.05)  # let in and waited 40 ms: still served
    assert not adm.admit(LATE_FACTOR * 25 * MS + MS, 1.06)  # far too late: shed


def test_the_limit_never_drops_below_its_floor_and_grows_back_once_the_queue_drains():
    adm = Admission(target_ms=25, interval_ms=100)
    for t in range(100):
        _feed(adm, t * 0.1, 0.1, 200, 80 * MS)
    assert adm.limit == MIN_LIMIT
    for t in range(100, 300):
        _feed(adm, t * 0.1, 0.1, 200, 1 * MS)
    assert adm.limit == MAX_LIMIT and not adm.overloaded


def test_few_requests_or_a_quiet_gap_are_no_evidence_of_overload():
    adm = Admission(target_ms=25, interval_ms=100)
    per_interval = MIN_SAMPLES // 2
    assert all(adm.admit(50 * MS, i * 0.1 / per_interval) for i in range(20 * per_interval))
    assert not adm.overloaded
    for t in range(10):
        _feed(adm, 3.0 + t * 0.1, 0.1, 500, 40 * MS)
    assert adm.overloaded
    adm.admit(1 * MS, 30.0)  # long after: that queue is history
    adm.admit(1 * MS, 30.2)
    assert adm.limit == MAX_LIMIT


def test_only_requests_with_their_body_count_as_in_progress():
    adm = Admission(target_ms=25, interval_ms=100)
    assert all(adm.arrival() for _ in range(5 * MAX_LIMIT))  # headers only: stalled uploads
    assert adm.in_progress == 0 and adm.arrival()
