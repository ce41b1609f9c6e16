"""Rendering a node's pod: what resume would send to Kubernetes."""

import pytest

from bridge import naming
from bridge.errors import TemplateError
from bridge.render import render_pod
from bridge.slurm import NodeFacts


def test_default_template_runs_slurmd_for_the_node(config, slurm):
    pod = render_pod(config, slurm.facts["elastic1"], job_id=42).manifest
    container = pod["spec"]["containers"][0]
    assert pod["metadata"]["name"] == "linux-elastic1"
    assert pod["metadata"]["namespace"] == "slurm"
    assert pod["spec"]["hostname"] == "elastic1"
    assert container["image"] == "slurm-k8s-bridge/slurmd:22.05.8"
    assert container["args"] == ["-b", "-N", "elastic1", "--conf-server", "slurmctld.example:6817"]


def test_pod_resources_match_the_slurm_node_shape(config, slurm):
    resources = render_pod(config, slurm.facts["elastic1"]).manifest["spec"]["containers"][0]["resources"]
    # RealMemory 1000 + the default overhead for slurmd, munged and slurmstepd
    assert resources == {"requests": {"cpu": "4", "memory": "1128Mi"}, "limits": {"cpu": "4", "memory": "1128Mi"}}


def test_pod_carries_the_labels_that_make_it_the_bridges(config, slurm):
    meta = render_pod(config, slurm.facts["elastic1"], job_id=42).manifest["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "slurm-k8s-bridge"
    assert meta["labels"][naming.CLUSTER_LABEL] == "linux"
    assert meta["labels"][naming.NODE_LABEL] == "elastic1"
    assert meta["labels"][naming.JOB_LABEL] == "42"
    assert meta["annotations"][naming.NODE_ANNOTATION] == "elastic1"


def test_munge_key_comes_from_a_secret_with_a_private_mode(config, slurm):
    spec = render_pod(config, slurm.facts["elastic1"]).manifest["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "munge-key")
    assert volume["secret"] == {"secretName": "munge-key", "defaultMode": 0o400}
    assert {"name": "munge-key", "mountPath": "/etc/munge", "readOnly": True} in spec["containers"][0]["volumeMounts"]


def test_nodeset_settings_reach_the_pod(config, slurm):
    spec = render_pod(config, slurm.facts["gpu01"]).manifest["spec"]
    assert spec["nodeSelector"] == {"pool": "gpu"}


@pytest.mark.parametrize("evil", ["a: b", "x\ny: z", "{{ 7*7 }}", "'; rm -rf /", '"quoted"', "- item", "&anchor *ref"])
def test_slurm_strings_cannot_change_the_manifest_structure(config, evil):
    facts = NodeFacts("elastic1", cpus=1, real_memory_mb=100, features=(evil,), gres=())
    pod = render_pod(config, facts).manifest
    assert set(pod) == {"apiVersion", "kind", "metadata", "spec"}
    assert pod["spec"]["containers"][0]["args"][2] == "elastic1"


def test_awkward_node_names_get_valid_pods_and_keep_their_exact_name(write_config):
    from bridge import config as config_module
    long_name = "Node_" + "X" * 295
    cfg = config_module.load(str(write_config(f"""
        slurm: {{conf_server: "h:1", cluster_name: linux}}
        log: {{file: null}}
        nodesets:
          - {{name: any, nodes: "Gpu_Node.1,{long_name}", image: "i:1"}}
        """)))
    for node in ("Gpu_Node.1", long_name):
        pod = render_pod(cfg, NodeFacts(node, cpus=1, real_memory_mb=1)).manifest
        assert pod["metadata"]["annotations"][naming.NODE_ANNOTATION] == node
        assert pod["spec"]["containers"][0]["args"][2] == node
        assert len(pod["metadata"]["name"]) <= 63 and pod["metadata"]["name"].islower()


def _template_config(write_config, tmp_path, template: str):
    from bridge import config as config_module
    (tmp_path / "t").mkdir(exist_ok=True)
    (tmp_path / "t" / "bad.yaml.j2").write_text(template)
    return config_module.load(str(write_config(f"""
        slurm: {{conf_server: "h:1", cluster_name: linux}}
        log: {{file: null}}
        templates_dir: {tmp_path / 't'}
        nodesets:
          - {{name: any, nodes: "elastic[1-4]", image: "i:1", template: bad.yaml.j2}}
        """)))


def test_undefined_variable_names_template_line_and_node(write_config, tmp_path, slurm):
    cfg = _template_config(write_config, tmp_path, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ pod.nmae }}\n")
    with pytest.raises(TemplateError) as error:
        render_pod(cfg, slurm.facts["elastic2"])
    assert "bad.yaml.j2:4" in str(error.value)
    assert "node elastic2" in str(error.value)
    assert "nmae" in str(error.value)


def test_template_syntax_error_names_the_line(write_config, tmp_path, slurm):
    cfg = _template_config(write_config, tmp_path, "apiVersion: v1\n{% if %}\n")
    with pytest.raises(TemplateError, match=r"bad.yaml.j2:2: node elastic1"):
        render_pod(cfg, slurm.facts["elastic1"])


def test_rendered_yaml_that_does_not_parse_is_a_template_error(write_config, tmp_path, slurm):
    cfg = _template_config(write_config, tmp_path, "apiVersion: v1\nkind: Pod\nmetadata: [\n  name: x\n")
    with pytest.raises(TemplateError, match=r"bad.yaml.j2:3: node elastic1: rendered YAML does not parse"):
        render_pod(cfg, slurm.facts["elastic1"])


def test_template_must_keep_the_bridges_name_and_labels(write_config, tmp_path, slurm):
    cfg = _template_config(write_config, tmp_path,
                           "apiVersion: v1\nkind: Pod\nmetadata:\n  name: other\nspec:\n  containers: []\n")
    with pytest.raises(TemplateError) as error:
        render_pod(cfg, slurm.facts["elastic1"])
    assert "metadata.name must be 'linux-elastic1'" in str(error.value)
    assert "spec.containers" in str(error.value)


@pytest.mark.parametrize("body, says", [
    ("metadata: [a]\n", "metadata must be a mapping"),
    ("metadata:\n  name: {{ pod.name }}\n  labels: [a]\n", "metadata.labels must be a mapping"),
    ("metadata:\n  name: {{ pod.name }}\n  annotations: x\n", "metadata.annotations must be a mapping"),
    ("metadata:\n  name: {{ pod.name }}\nspec: [c]\n", "spec must be a mapping"),
])
def test_a_template_whose_metadata_or_spec_is_not_a_mapping_is_a_template_error(write_config, tmp_path, slurm,
                                                                                body, says):
    cfg = _template_config(write_config, tmp_path, "apiVersion: v1\nkind: Pod\n" + body)
    with pytest.raises(TemplateError) as error:
        render_pod(cfg, slurm.facts["elastic1"])
    assert str(error.value).endswith(f"node elastic1: {says}") and error.value.exit_code == 65


@pytest.mark.parametrize("expression, words", [
    ("{{ node.cpus // 0 }}", "ZeroDivisionError: integer division or modulo by zero"),
    ("{{ {}.pop('x') }}", "KeyError: 'x'"),
    ("{{ node.name.split().pop(3) }}", "IndexError: pop index out of range"),
    ("{{ '%d' % node.name }}", "TypeError: %d format: a real number is required, not str"),
])
def test_a_template_that_raises_while_rendering_names_template_line_and_node(write_config, tmp_path, slurm,
                                                                             expression, words):
    cfg = _template_config(write_config, tmp_path, f"apiVersion: v1\nkind: Pod\nmetadata:\n  x: {expression}\n")
    with pytest.raises(TemplateError) as error:
        render_pod(cfg, slurm.facts["elastic3"])
    assert str(error.value).startswith(f"{tmp_path / 't' / 'bad.yaml.j2'}:4: node elastic3: ")
    assert words in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 65


def test_a_job_whose_template_raises_is_released_with_that_cause(write_config, tmp_path, slurm, kube, log):
    from bridge import resume
    from bridge.resumefile import parse

    cfg = _template_config(write_config, tmp_path, "apiVersion: v1\nkind: Pod\nmetadata:\n  x: {{ 1 / 0 }}\n")
    slurm.add_job(9, ["elastic1", "elastic2"])
    request = parse('{"jobs":[{"job_id":9,"nodes":"elastic[1-2]"}],"all_nodes":"elastic[1-2]"}')
    outcome = resume.resume(["elastic1", "elastic2"], config=cfg, slurm=slurm, kube=kube, request=request, log=log)
    assert kube.pods == {} and outcome.exit_code() == 65
    assert set(slurm.down) == {"elastic1", "elastic2"}
    assert "bad.yaml.j2:4: node elastic1: ZeroDivisionError: division by zero" in slurm.down["elastic1"]
