"""The warm-pool simulator's clairvoyant bound and its policies on traces small enough to work out
by hand: the README's figures rest on these sums."""

from __future__ import annotations

import pytest

from benchmarks.warm_pool_sim import FOLLOWS, RUNNING, UNANNOUNCED, WAITING, Job, clairvoyant, misses, simulate
from bridge import warmpool

BOOT = 60.0


def test_the_bound_reuses_the_nodes_a_job_just_freed():
    # A's two nodes are started 60 s ahead (120 node-s); B takes them 10 s after A freed them.
    jobs = [Job(0, 100, 2), Job(110, 100, 2)]
    assert clairvoyant(jobs, 4, BOOT) == pytest.approx((2 * 60 + 2 * 10) / 400)


def test_the_bound_restarts_a_node_rather_than_idle_it_longer_than_a_boot():
    jobs = [Job(0, 100, 2), Job(300, 100, 2)]  # a 200 s gap: suspend and start again 60 s ahead
    assert clairvoyant(jobs, 4, BOOT) == pytest.approx((2 * 60 + 2 * 60) / 400)


def test_the_bound_follows_fcfs_capacity_waits():
    # Two nodes only: B waits for A's and takes them the moment A ends, at no idle cost.
    jobs = [Job(0, 100, 2), Job(50, 100, 2)]
    assert clairvoyant(jobs, 2, BOOT) == pytest.approx(2 * 60 / 400)


def _run(jobs, size, policy, **kw):
    pool_policy = kw.pop("pool_policy", warmpool.PoolPolicy(max=size, horizon=BOOT + 10))
    return simulate(jobs, size, policy, boot=BOOT, tick=10, epoch=0.0, pool_policy=pool_policy, **kw)


def test_reactive_starts_cold_unless_a_job_left_its_nodes_up():
    jobs = [Job(0, 100, 2), Job(200, 100, 2), Job(5000, 100, 2)]
    result = _run(jobs, 4, "reactive", suspend_time=600)
    # The first job waits for its boot; the second finds the first's nodes (idle 100 s of 600);
    # the third comes after SuspendTime and boots again.
    assert result["extra"] == [BOOT, 0.0, BOOT]


def test_jobs_start_at_slurms_next_scheduling_pass_so_a_node_may_be_gone_by_then():
    # Started as they come, A (at 50) frees its nodes at 210 and B (at 250) takes them 40 s later,
    # within the 50 s they stay up. On a pass every 60 s, A starts at 60 and frees them at 220,
    # and B is allocated at 300: they were suspended at 270, and B boots.
    jobs = [Job(50, 100, 2), Job(250, 100, 2)]
    assert _run(jobs, 4, "reactive", suspend_time=50)["extra"] == [BOOT, 0.0]
    passes = _run(jobs, 4, "reactive", suspend_time=50, sched_interval=60)
    assert passes["extra"] == [BOOT, BOOT]
    assert [ready for _, ready in passes["started"]] == [60 + BOOT, 300 + BOOT]


def test_a_fixed_pool_starts_every_job_that_fits_it_warm():
    # The replay starts at the first submission, with nothing up: that job boots its nodes.
    jobs = [Job(100, 50, 2), Job(1000, 50, 2), Job(3000, 50, 2), Job(5000, 50, 4)]
    result = _run(jobs, 8, "fixed", fixed=2, suspend_time=60)
    assert result["extra"][:3] == [BOOT, 0.0, 0.0]
    assert result["extra"][3] == BOOT  # 4 nodes: the pool's two and two that must boot


@pytest.mark.parametrize("limit_factor, waits", [(1.0, 0.0), (2.0, BOOT)])
def test_a_queued_job_finds_its_free_nodes_up_when_slurm_expects_its_turn(limit_factor, waits):
    # B needs all 4 nodes and waits for A's 2. The pool keeps nothing of its own (linger 0, a
    # tiny hold); one horizon before B's expected start it starts B's 2 free nodes. With time
    # limits as long as the runtimes, Slurm's expectation is right and B starts warm; with limits
    # twice the runtime the pool starts them too late and B waits a boot.
    jobs = [Job(0, 300, 2), Job(10, 100, 4)]
    pool_policy = warmpool.PoolPolicy(max=4, horizon=70, linger=0, hold=1.0, idle_share=0)
    result = _run(jobs, 4, "predictive", pool_policy=pool_policy, limit_factor=limit_factor, suspend_time=0)
    assert result["extra"] == [BOOT, waits]


def test_misses_are_told_apart_by_job_size_and_by_what_the_user_was_doing():
    jobs = [
        Job(0, 100, 1, user=1),     # nothing known of user 1: boots, runs 60-160
        Job(300, 100, 1, user=1),   # user 1's job ended 140 s ago; its node is still up: warm
        Job(350, 100, 2, user=1),   # while that one runs; needs two more nodes: boots
        Job(2000, 100, 4, user=2),  # a new user, after every node was suspended: boots
        Job(5000, 100, 1, user=1),  # user 1 back after more than 10 minutes: boots (runs 5060-)
        Job(5010, 100, 1, user=1),  # while that one waits for its boot: boots too
    ]
    result = _run(jobs, 8, "reactive", suspend_time=600)
    assert result["extra"] == [BOOT, 0.0, BOOT, BOOT, BOOT, BOOT]
    tables = misses(result)  # (jobs, of which warm)
    assert tables["size"] == {"1": (4, 1), "2": (1, 0), "3-4": (1, 0)}
    assert tables["history"] == {UNANNOUNCED: (3, 0), FOLLOWS: (1, 1), RUNNING: (1, 0), WAITING: (1, 0)}


def test_a_daily_idle_cap_bounds_the_worst_days_idle_at_the_cost_of_warm_starts():
    # A 2-node job every 20 min for two days: the pool (hold large, no budget) holds 2 nodes
    # idle between them, 2 x 18 min an interval. Capped at 4 idle pod-hours a day, it stops
    # holding once they are spent and the later jobs of each day boot their nodes.
    jobs = [Job(t, 120, 2) for t in range(0, 2 * 86400, 1200)]
    free = warmpool.PoolPolicy(max=4, horizon=BOOT + 10, hold=10 ** 6, idle_share=0, linger=60)
    capped = warmpool.PoolPolicy(max=4, horizon=BOOT + 10, hold=10 ** 6, idle_share=0, linger=60,
                                 idle_hours_per_day=4)
    held, cut = (_run(jobs, 4, "predictive", pool_policy=p, suspend_time=60) for p in (free, capped))
    assert sum(e == 0 for e in held["extra"]) == len(jobs) - 1  # only the first job boots
    assert held["worst_day_idle_hours"] > 40
    # A job's own boot is not idle time: the cap holds to within a tick of two nodes.
    assert 3.9 <= cut["worst_day_idle_hours"] <= 4 + 2 * 10 / 3600
    assert sum(e > 0 for e in cut["extra"]) > len(jobs) * 0.9


def test_learning_at_looks_misses_a_job_that_came_and_went_between_two():
    # As the daemon: it learns demand from the nodes allocated at each look (every 10 s). A
    # 2-node job that lands on warm nodes at 66 s and ends at 69 s, between the looks at 60 and
    # 70, is never seen: the pool does not hold its series a horizon (70 s) longer, and its two
    # nodes go at the look at 70 s instead of the one at 140 s.
    jobs = [Job(0, 5, 2), Job(66, 3, 2), Job(1000, 5, 1)]
    rules = warmpool.PoolPolicy(max=4, horizon=BOOT + 10, linger=0, hold=1.0, idle_share=0)
    seen = _run(jobs, 4, "predictive", pool_policy=rules, suspend_time=0)
    at_looks = _run(jobs, 4, "predictive", pool_policy=rules, suspend_time=0, learn_at_looks=True)
    assert seen["extra"] == at_looks["extra"] == [BOOT, 0.0, BOOT]  # the second finds the first's nodes up
    busy = 2 * 5 + 2 * 3 + 1 * 5
    assert seen["idle_share"] * busy - at_looks["idle_share"] * busy == pytest.approx(2 * 70)


def test_a_node_that_goes_from_one_job_to_the_next_between_two_looks_is_no_arrival():
    # The daemon learns the nodes allocated now that were not at its last look: two nodes freed
    # after that look and taken again before the next one were allocated at both.
    from benchmarks.warm_pool_sim import Pool

    pool = Pool(4)
    pool.idle.extend([100.0, 155.0, 165.0])  # idle since; the last look was at 160
    pool.take(2, 170.0, BOOT, freed_after=160.0)  # the most recently freed first: 165, then 155
    assert pool.reused == 1
    pool.take(2, 170.0, BOOT, freed_after=160.0)  # 100, then a boot
    assert pool.reused == 0
