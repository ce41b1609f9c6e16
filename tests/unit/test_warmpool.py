"""The warm pool's target: a pure function of what was submitted and when (no clock read)."""

from __future__ import annotations

import json
from dataclasses import replace

from bridge import warmpool
from bridge.warmpool import Demand, PoolPolicy

MONDAY = 4 * 86400.0  # 1970-01-05 00:00 UTC was a Monday
HOUR = 3600.0
POLICY = PoolPolicy(max=32, horizon=60.0)


def _weeks_of_working_days(weeks: int, *, per_hour: int = 6, nodes: int = 4) -> Demand:
    """Submissions every 10 minutes on weekdays 9-17 h, none otherwise."""
    d = Demand()
    for week in range(weeks):
        for day in range(5):
            for hour in range(9, 17):
                for i in range(per_hour):
                    t = MONDAY + week * 7 * 86400 + day * 86400 + hour * HOUR + i * HOUR / per_hour
                    d = warmpool.observe(d, t, nodes, POLICY)
    return d


def test_hour_of_week_starts_on_monday_utc() -> None:
    assert warmpool.hour_of_week(MONDAY) == 0
    assert warmpool.hour_of_week(MONDAY + 9 * HOUR) == 9
    assert warmpool.hour_of_week(MONDAY + 6 * 86400 + 23 * HOUR) == 167


def test_nothing_learned_means_no_pool() -> None:
    assert warmpool.target(Demand(), MONDAY + 9 * HOUR, POLICY) == 0


def test_no_pool_when_max_is_zero_whatever_the_demand() -> None:
    d = _weeks_of_working_days(1)
    assert warmpool.target(d, MONDAY + 7 * 86400 + 10 * HOUR, PoolPolicy(max=0)) == 0


def test_the_weekly_rhythm_fills_the_pool_before_the_first_job_of_the_morning() -> None:
    d = _weeks_of_working_days(2)
    # Third Monday, 09:00, before anything was submitted that day: the profile expects work.
    morning = MONDAY + 14 * 86400 + 9 * HOUR + 1
    night = MONDAY + 14 * 86400 + 3 * HOUR
    assert warmpool.target(d, morning, POLICY) >= 4
    assert warmpool.target(d, night, POLICY) == 0


def test_quiet_hours_scale_to_zero_and_min_is_kept() -> None:
    # After one week the weekend was seen empty; the second Saturday is expected quiet.
    d = _weeks_of_working_days(2)
    saturday = MONDAY + 12 * 86400 + 12 * HOUR
    assert warmpool.target(d, saturday, POLICY) == 0
    assert warmpool.target(d, saturday, PoolPolicy(min=2, max=32)) == 2


def test_a_burst_is_followed_at_once() -> None:
    d = Demand()
    t = MONDAY + 3 * HOUR  # a night the profile knows nothing of
    d = warmpool.observe(d, t, 8, POLICY)
    d = warmpool.observe(d, t + 20, 8, POLICY)
    # Two 8-node jobs within the horizon: the next horizon is expected to bring as much.
    assert warmpool.target(d, t + 30, POLICY) >= 16
    # Long after the burst, with nothing since, the pool goes back to zero.
    assert warmpool.target(d, t + 2 * POLICY.quiet_after, POLICY) == 0


def test_the_pool_holds_the_sizes_whose_warm_starts_are_worth_their_idle_time() -> None:
    # A 1-node job every 2 minutes is worth one idle node; a 32-node job as often is not worth
    # 32 (a warm start each 120 s would cost 3,840 idle node-seconds, more than hold's 3,600).
    assert warmpool.worth_holding({1: 1 / 120}, hold=3600.0) == 1
    assert warmpool.worth_holding({32: 1 / 120}, hold=3600.0) == 0
    assert warmpool.worth_holding({32: 1 / 60}, hold=3600.0) == 32
    # Mixed: many 1-node jobs and a rare 32-node one hold 1; as the large ones become frequent
    # the pool grows to hold them too.
    assert warmpool.worth_holding({1: 1 / 60, 32: 1 / 3600}, hold=3600.0) == 1
    assert warmpool.worth_holding({1: 1 / 60, 32: 1 / 60}, hold=3600.0) == 32
    assert warmpool.worth_holding({}, hold=3600.0) == 0


def test_small_jobs_keep_a_small_pool_and_a_rare_large_job_does_not_inflate_it() -> None:
    d = Demand()
    t = MONDAY + 3 * HOUR  # a night the profile knows nothing of
    for i in range(30):
        d = warmpool.observe(d, t + i * 120, 1, POLICY)
    d = warmpool.observe(d, t + 30 * 120, 32, POLICY)
    after_series = t + 30 * 120 + 2 * POLICY.horizon  # the 32-node job is no longer "just now"
    assert warmpool.target(d, after_series, POLICY) == 1
    # The same large job every minute is worth holding.
    for i in range(1, 20):
        d = warmpool.observe(d, t + 30 * 120 + i * 60, 32, POLICY)
    assert warmpool.target(d, t + 30 * 120 + 19 * 60 + 2 * POLICY.horizon, POLICY) == 32
    # A site that values warm starts less (a smaller hold) keeps less for the same demand: the
    # (fading) 1-node series is still worth a node, the 32-node jobs are not.
    frugal = PoolPolicy(max=32, horizon=60.0, hold=600.0)
    assert warmpool.target(d, t + 30 * 120 + 19 * 60 + 2 * POLICY.horizon, frugal) == 1


def test_the_target_never_exceeds_max_and_pending_nodes_come_on_top() -> None:
    d = Demand()
    t = MONDAY + 10 * HOUR
    for i in range(50):
        d = warmpool.observe(d, t + i, 64, POLICY)
    assert warmpool.target(d, t + 51, POLICY) == POLICY.max
    assert warmpool.target(d, t + 51, POLICY, pending_nodes=3) == POLICY.max + 3


def test_over_budget_idle_time_shrinks_the_pool_and_the_linger() -> None:
    d = Demand()
    t = MONDAY + 10 * HOUR
    for i in range(4):
        d = warmpool.observe(d, t + i * 10, 8, POLICY)
    within = warmpool.account(d, idle_seconds=5.0, busy_seconds=100.0, elapsed=60, now=t + 40, policy=POLICY)
    over = warmpool.account(d, idle_seconds=40.0, busy_seconds=100.0, elapsed=60, now=t + 40, policy=POLICY)
    assert warmpool.target(over, t + 40, POLICY) < warmpool.target(within, t + 40, POLICY)
    assert warmpool.linger(within, t + 40, POLICY) == POLICY.linger
    assert warmpool.linger(over, t + 40, POLICY) == POLICY.linger * 0.25


def test_what_was_learned_survives_a_restart_through_json() -> None:
    d = _weeks_of_working_days(1)
    restored = warmpool.from_json(json.loads(json.dumps(warmpool.to_json(d))))
    monday = MONDAY + 7 * 86400 + 9 * HOUR + 1
    assert restored == d
    assert warmpool.target(restored, monday, POLICY) == warmpool.target(d, monday, POLICY)


def test_the_daily_idle_cap_counts_the_idle_hours_of_the_last_24_hours() -> None:
    capped = PoolPolicy(max=8, idle_hours_per_day=3)
    t = MONDAY + 10 * HOUR
    d = Demand()
    for i in range(8):
        d = warmpool.observe(d, t + i, 4, capped)
    assert warmpool.target(d, t + 10, PoolPolicy(max=8)) == 8
    assert warmpool.target(d, t + 10, capped) == 3  # three nodes could each idle an hour
    d = warmpool.account(d, idle_seconds=3600, busy_seconds=0, elapsed=600, now=t + 600, policy=capped)
    assert warmpool.target(d, t + 600, capped) == 2 and warmpool.linger(d, t + 600, capped) == capped.linger
    later = t + 2 * HOUR + 600
    d = warmpool.account(d, idle_seconds=2 * 3600, busy_seconds=0, elapsed=600, now=later, policy=capped)
    assert warmpool.capped(d, later, capped)
    assert warmpool.target(d, later, capped) == 0 and warmpool.linger(d, later, capped) == 0
    assert warmpool.target(d, later, replace(capped, min=1)) == 1  # min is kept whatever the cap
    # The hour that began 24 h before counts for its part inside them; an hour later it has rolled off.
    assert warmpool.idle_last_day(d, t + 24 * HOUR + 1) == 3 * 3600 - 1
    assert warmpool.idle_last_day(d, t + 24 * HOUR + 1800) == 1800 + 2 * 3600
    assert warmpool.idle_last_day(d, t + 25 * HOUR + 1) == 2 * 3600
    assert not warmpool.capped(d, t + 25 * HOUR + 1, capped)
    restored = warmpool.from_json(json.loads(json.dumps(warmpool.to_json(d))))
    assert restored == d
    older = {k: v for k, v in warmpool.to_json(d).items() if k != "idle_hours"}  # a state file from before the cap
    assert warmpool.from_json(older).idle_hours == ()


def test_min_nodes_idle_all_day_spend_24_hours_each_and_leave_the_rest_of_the_cap_to_the_pool() -> None:
    """min 4, cap 100: the four nodes kept whatever the cap spend 96 pod-hours a day, never
    the cap; the 4 hours left let the pool hold up to 4 nodes more for the jobs it expects."""
    policy = PoolPolicy(min=4, max=12, idle_share=0, hold=10 ** 6, quiet_after=10 ** 6, idle_hours_per_day=100)
    d, t = Demand(), MONDAY + 7 * 86400
    for i in range(6):
        d = warmpool.observe(d, t - 40 * HOUR + i, 1, policy)  # jobs of 1 node: the pool would hold 1
    for tick in range(1, 26 * 360 + 1):  # 26 hours of 10 s looks, the four min nodes idle
        now = t + tick * 10
        d = warmpool.account(d, idle_seconds=4 * 10, busy_seconds=0, elapsed=10, now=now, policy=policy)
        assert not warmpool.capped(d, now, policy)
    assert abs(warmpool.idle_last_day(d, now) - 96 * HOUR) < 1
    d = warmpool.observe(d, now, 10, policy)  # a 10-node job: the series asks for 10 at once
    assert warmpool.target(d, now + 1, policy) == 4 + 4  # min + the whole hours left
    assert warmpool.target(d, now + 1, replace(policy, idle_hours_per_day=98.5)) == 4 + 2
