"""Reading `scontrol -o show node` lines as Slurm 22.05 prints them."""

from bridge.slurm import parse_node_line, reason

LINE = ("NodeName=gpu01 Arch=x86_64 CoresPerSocket=16 CPUAlloc=0 CPUEfctv=32 CPUTot=32 CPULoad=N/A "
        "AvailableFeatures=h100,ib ActiveFeatures=h100,ib Gres=gpu:h100:8(S:0-1),mps:100 NodeAddr=gpu01 "
        "NodeHostName=gpu01 Port=6831 RealMemory=256000 AllocMem=0 FreeMem=N/A Sockets=2 Boards=1 "
        "State=IDLE+CLOUD+POWERED_DOWN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A "
        "Partitions=elastic OS=Linux 6.1.0 #1 SMP Debian Reason=slurm-k8s-bridge: pod x: Forbidden: no [root@2026-11-23T02:00:00]")


def test_node_line_gives_the_shape_the_pod_needs():
    facts = parse_node_line(LINE)
    assert (facts.name, facts.cpus, facts.real_memory_mb) == ("gpu01", 32, 256000)
    assert facts.gres == ("gpu:h100:8", "mps:100")
    assert facts.features == ("h100", "ib")
    assert facts.state == ("IDLE", "CLOUD", "POWERED_DOWN")
    assert facts.reason.startswith("slurm-k8s-bridge: pod x: Forbidden: no")


def test_gres_counts_by_name_and_type():
    facts = parse_node_line(LINE)
    assert facts.gres_count("gpu") == 8
    assert facts.gres_count("gpu", "h100") == 8
    assert facts.gres_count("gpu", "a100") == 0
    assert facts.gres_count("mps") == 100


def test_null_fields_are_empty():
    facts = parse_node_line("NodeName=e1 CPUTot=1 AvailableFeatures=(null) Gres=(null) RealMemory=1 State=IDLE")
    assert facts.features == () and facts.gres == ()


def test_reason_starts_with_the_bridge_name_on_one_bounded_line():
    text = reason("pod x:\n  Forbidden " + "y" * 500)
    assert text.startswith("slurm-k8s-bridge: pod x: Forbidden")
    assert "\n" not in text and len(text) <= 200
    assert reason("slurm-k8s-bridge: a") == "slurm-k8s-bridge: a"
