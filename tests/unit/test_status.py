"""``status``: one table, and a mark exactly where the daemon's plan sees a disagreement."""

from __future__ import annotations

import json

from bridge import naming, status
from bridge.slurm import NodeFacts

NOW = 1_800_000_000.0


def pod(node: str, phase: str = "Running") -> dict:
    return {"metadata": {"name": f"linux-{node}", "labels": naming.owner_labels("linux"),
                         "annotations": {naming.NODE_ANNOTATION: node}, "creationTimestamp": "2027-01-15T07:58:00Z"},
            "spec": {"nodeName": "worker-1"}, "status": {"phase": phase}}


def test_table_marks_the_planted_disagreement_only(config):
    facts = {"elastic1": NodeFacts("elastic1", 1, 500, state=("MIXED", "CLOUD")),
             "elastic2": NodeFacts("elastic2", 1, 500, state=("MIXED", "CLOUD")),
             "elastic3": NodeFacts("elastic3", 1, 500, state=("IDLE", "CLOUD", "POWERED_DOWN")),
             "elastic4": NodeFacts("elastic4", 1, 500, state=("IDLE", "CLOUD", "POWERED_DOWN"))}
    host = {"metadata": {"name": "worker-1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    found = status.rows(facts, [pod("elastic1"), pod("elastic3")], [host], now=NOW, config=config)
    assert [(r.node, bool(r.disagree)) for r in found] == [("elastic1", False), ("elastic2", True), ("elastic3", True)]
    by_node = {r.node: r for r in found}
    assert by_node["elastic2"].disagree == "release node: its pod is gone"
    assert by_node["elastic3"].disagree.startswith("delete pod: orphan pod")
    assert by_node["elastic1"].age == "2m" and by_node["elastic1"].k8s_node == "worker-1"
    text = status.table(found).splitlines()
    assert text[0].startswith("NODE") and len(text) == 4
    assert [line.split()[0] for line in text if "  !  " in line] == ["elastic2", "elastic3"]
    assert json.loads(status.as_json(found))[1]["disagree"] == "release node: its pod is gone"
    assert len(status.rows(facts, [pod("elastic1")], [host], now=NOW, config=config, everything=True)) == 4
