"""benchmarks/_common.py: when slurmctld allocated each job, read from its log (the replay
measures what a job pays for being elastic from there)."""

from datetime import datetime

from benchmarks._common import allocated_to_start, allocations

# Lines as slurmctld 22.05 writes them here (a job the main scheduler placed, one backfill
# started, and one requeued and allocated again).
LOG = """\
[2026-12-06T23:33:08.059] _slurm_rpc_submit_batch_job: JobId=1 InitPrio=4294901759 usec=786
[2026-12-06T23:33:08.872] sched: Allocate JobId=1 NodeList=elastic[1-2] #CPUs=2 Partition=elastic
[2026-12-06T23:33:09.004] prolog_running_decr: Configuration for JobId=1 is complete
[2026-12-06T23:33:12.863] sched/backfill: _start_job: Started JobId=3 in elastic on elastic[1-2]
[2026-12-06T23:33:20.100] sched: Allocate JobId=12 NodeList=elastic3 #CPUs=1 Partition=elastic
[2026-12-06T23:33:40.500] sched: Allocate JobId=12 NodeList=elastic4 #CPUs=1 Partition=elastic
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_allocation_times_come_from_the_scheduler_and_backfill_lines(tmp_path):
    log = tmp_path / "slurmctld.log"
    log.write_text(LOG)
    times = allocations(log)
    assert times == {"1": [at("2026-12-06T23:33:08.872")], "3": [at("2026-12-06T23:33:12.863")],
                     "12": [at("2026-12-06T23:33:20.100"), at("2026-12-06T23:33:40.500")]}
    # The script ran 0.15 s after its allocation; a requeued job counts from the allocation it ran on.
    assert round(allocated_to_start(times["1"], at("2026-12-06T23:33:09.022")), 3) == 0.15
    assert round(allocated_to_start(times["12"], at("2026-12-06T23:33:41.000")), 3) == 0.5
