"""The admin CLI against the API stand-in: what a script reading its output gets."""

from __future__ import annotations

import yaml

from bridge.cli import main as cli_main
from tests.conftest import BASIC_CONFIG


def test_a_retried_call_leaves_stdout_to_the_answer(kubeapi_server, kubeapi_http, write_config, tmp_path,
                                                    monkeypatch, capsys):
    # One 429 on the pod listing: the client waits and asks again. Its warning is no line of
    # the table or the JSON that `| jq` reads.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeapi_server.kubeconfig()))
    path = write_config(BASIC_CONFIG.replace("  namespace: slurm\n", f"  namespace: slurm\n  kubeconfig: {kubeconfig}\n"))
    rule = {"verb": "list", "resource": "pods", "code": 429, "retry_after": 1, "count": 1}
    assert kubeapi_http.post("/_testenv/faults", json=rule).status_code == 201
    monkeypatch.setattr("sys.argv", ["slurm-k8s-bridge", "--config", str(path), "pods"])
    try:
        cli_main()
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err
    out, err = capsys.readouterr()
    assert kubeapi_http.get("/_testenv/faults").json() == {"items": []}, "the 429 was answered"
    assert "retry" not in out and "warning" not in out, out
    assert "retry" in err or "429" in err, err
