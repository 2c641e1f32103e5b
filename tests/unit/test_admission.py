"""Overload shedding on queueing delay: serves bursts that drain, sheds only a standing queue."""

from fraudscore.edge.admission import MIN_SAMPLES, Admission

MS = 0.001


def _feed(adm: Admission, start: float, seconds: float, rate: int, sojourn: float) -> list[bool]:
    return [adm.admit(sojourn, start + i / rate) for i in range(int(seconds * rate))]


def test_a_short_wait_is_always_served():
    adm = Admission(target_ms=5, interval_ms=100)
    assert all(_feed(adm, 0.0, 1.0, 1000, 1 * MS))
    assert not adm.overloaded


def test_a_standing_queue_sheds_the_late_and_serves_the_prompt():
    adm = Admission(target_ms=5, interval_ms=100)
    first = _feed(adm, 0.0, 0.1, 1000, 20 * MS)  # one interval of 20 ms waits: not yet shedding
    assert all(first) and not adm.overloaded
    later = _feed(adm, 0.1, 0.3, 1000, 20 * MS)  # the queue stood a whole interval: shed
    assert adm.overloaded and not any(later[1:])
    assert adm.admit(2 * MS, 0.45)  # a request that waited less than the target is served
    assert adm.admit(20 * MS, 0.46) is False


def test_shedding_ends_once_the_queue_drains():
    adm = Admission(target_ms=5, interval_ms=100)
    _feed(adm, 0.0, 0.3, 1000, 20 * MS)
    assert adm.overloaded
    _feed(adm, 0.3, 0.1, 1000, 1 * MS)  # waits fell below the target during this interval
    assert all(_feed(adm, 0.4, 0.1, 1000, 20 * MS)) and not adm.overloaded


def test_a_burst_that_drains_within_the_interval_is_served():
    adm = Admission(target_ms=5, interval_ms=100)
    for t in range(10):  # every 100 ms: 50 requests that waited 30 ms, then the queue is empty
        base = t * 0.1
        assert all(adm.admit(30 * MS, base + i * 0.0001) for i in range(50))
        assert adm.admit(0.5 * MS, base + 0.01)
    assert not adm.overloaded


def test_few_requests_or_a_quiet_gap_never_count_as_overload():
    adm = Admission(target_ms=5, interval_ms=100)
    per_interval = MIN_SAMPLES // 2  # slow requests now and then: fewer than MIN_SAMPLES an interval
    assert all(adm.admit(50 * MS, i * 0.1 / per_interval) for i in range(20 * per_interval))
    adm = Admission(target_ms=5, interval_ms=100)
    _feed(adm, 0.0, 0.3, 1000, 20 * MS)
    assert adm.overloaded
    assert adm.admit(20 * MS, 5.0)  # seconds later: that queue is history, not a reason to shed
    assert not adm.overloaded
