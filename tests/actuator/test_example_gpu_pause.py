"""The example config's GPU pause, commented out there (it needs a cluster), stays in
step with the AISpendGPUIdle rule it acts on: uncommented, it loads, its rule is the
first to match the generated pause alert, and its Kubernetes target finds the workload
from labels that alert carries (namespace and pod). Nothing is simulated: the example
file and the generated rule file are read as shipped."""

from __future__ import annotations

import re

import yaml

from aispend.actuators.settings import KubernetesTargetSettings, _template_names
from aispend.config import parse_config
from aispend.rules.alerts import GPU_WORKLOAD
from tests.conftest import EXAMPLE_CONFIG, REPO

PAUSE_RULE = "pause-idle-gpu"


def uncommented_example() -> str:
    """aispend.example.yaml with the GPU pause rule and its `k8s` target uncommented."""
    lines = EXAMPLE_CONFIG.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    in_target = False
    for line in lines:
        if re.match(rf"\s*# - \{{name: {PAUSE_RULE},", line):
            line = line.replace("# - ", "- ", 1)
        elif re.fullmatch(r"    # k8s:", line):
            in_target, line = True, "    k8s:"
        elif in_target and line.startswith("    #   ") and not line.startswith("    #   #"):
            line = "    " + line[len("    # ") :]
        elif in_target and not line.startswith("    #   #"):
            in_target = False
        out.append(line)
    return "\n".join(out) + "\n"


def generated_pause_alert() -> dict:
    rules = yaml.safe_load((REPO / "alert-rules" / "aispend.alerts.yml").read_text())
    found = [
        rule
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "AISpendGPUIdle" and rule["labels"].get("action") == "pause"
    ]
    assert len(found) == 1
    return found[0]


def test_the_example_gpu_pause_acts_on_the_generated_alert() -> None:
    text = uncommented_example()
    assert f"- {{name: {PAUSE_RULE}," in text and "\n    k8s:\n" in text
    actions = parse_config(text, "example-uncommented").actions

    rule = generated_pause_alert()
    # One pause alert per pod: its labels are the GPU's plus namespace and pod.
    assert f"group by (UUID, {', '.join(GPU_WORKLOAD)}, team, project)" in rule["expr"]
    labels = {
        "alertname": "AISpendGPUIdle",
        **rule["labels"],
        "team": "research",
        "namespace": "finetune",
        "pod": "trainer-6f7c9d-x2x9q",
    }
    first = next(r for r in actions.rules if r.matches(labels))
    assert first.name == PAUSE_RULE and first.mode == "pause"

    target = actions.targets[first.target]
    assert isinstance(target, KubernetesTargetSettings)
    assert target.pod is not None and set(target.kinds()) == {"Deployment", "StatefulSet", "Job"}
    used = set(_template_names(target.namespace)) | set(_template_names(target.pod))
    assert used and used <= set(GPU_WORKLOAD)


def test_uncommenting_changes_only_the_gpu_pause() -> None:
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    uncommented = yaml.safe_load(uncommented_example())
    assert [r["name"] for r in uncommented["actions"]["rules"]] == [
        *(r["name"] for r in example["actions"]["rules"]),
        PAUSE_RULE,
    ]
    assert set(uncommented["actions"]["targets"]) == {*example["actions"]["targets"], "k8s"}
    example["actions"]["rules"] = uncommented["actions"]["rules"]
    example["actions"]["targets"] = uncommented["actions"]["targets"]
    assert example == uncommented
