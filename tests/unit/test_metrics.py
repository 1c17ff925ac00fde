from gateway.metrics import Metrics


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_counts_the_last_sixty_seconds() -> None:
    clock = Clock(600.0)  # the start of minute 10
    metrics = Metrics(clock=clock)
    for _ in range(6):
        metrics.observe(("p", "m"), ok=True)
    clock.now = 630.0  # half a minute later, in minute 10
    assert metrics.figures()[0].requests_per_min == 6
    clock.now = 690.0  # minute 11, half way: half of minute 10 is still in the window
    metrics.observe(("p", "m"), ok=False, ttft_ms=100.0)
    figures = metrics.figures()[0]
    assert figures.requests_per_min == 1 + 3
    assert figures.error_rate == round(1 / 7, 3)
    assert figures.ttft_p50_ms == 100.0
    clock.now = 600.0 + 3600 + 120  # past the hour: nothing left to show
    assert metrics.figures() == []


def test_series_has_one_point_per_minute_of_the_hour() -> None:
    clock = Clock(6000.0)
    metrics = Metrics(clock=clock)
    metrics.observe(("p", "a"), ok=True, tps=50.0)
    metrics.observe(("p", "b"), ok=True, tps=70.0)
    points = metrics.series("p", "requests")
    assert len(points) == 60 and points[-1][1] == 2.0 and points[0][1] == 0.0
    assert metrics.series("p", "tps")[-1][1] == 60.0
