"""Kubernetes target against a local HTTPS server that implements the endpoints it calls.

Simulated: the Kubernetes API server (no cluster here). The fake implements the
documented apps/v1 `.../{deployments,statefulsets}/{name}/scale` GET/PATCH, the list
endpoint with `labelSelector`, batch/v1 CronJob and Job GET/PATCH, and the GETs that `pod:`
resolves through: core `/api/v1/namespaces/{ns}/pods/{name}` and apps/v1
`.../replicasets/{name}`, each answering `metadata.ownerReferences` in the documented
shape (apiVersion, kind, name, uid, controller, blockOwnerDeletion; the Deployment
controller owns the ReplicaSet, which owns the pod). Every call needs the bearer token
(else 401); PATCH must carry `application/merge-patch+json` (else 415, as the API
server answers); `errors` answers a path with a status (an unhealthy API server). TLS
is real (a trustme CA, trusted through the kubeconfig's `certificate-authority-data`),
so the kubeconfig path is exercised as in real use.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web

from aispend.actuators.settings import KubernetesTargetSettings
from aispend.actuators.targets.base import Action, TargetError
from aispend.actuators.targets.kubeauth import from_kubeconfig
from aispend.actuators.targets.kubernetes import KubernetesTarget
from tests.actuator.fakes import Seen, ThreadedServer, _seen

K8S_TOKEN = "kube-sa-token-abc123"


def owner(kind: str, name: str, api_version: str = "apps/v1") -> dict[str, Any]:
    """One controlling ownerReference, as the API server writes it."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": f"uid-{name}",
        "controller": True,
        "blockOwnerDeletion": True,
    }


class FakeKubernetes:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {
            ("deployments", "search", "rerank-agent"): {
                "replicas": 3,
                "labels": {"agent": "rerank-agent"},
            },
            ("statefulsets", "research", "eval-a"): {
                "replicas": 2,
                "labels": {"agent": "eval-runner"},
            },
            ("statefulsets", "research", "eval-b"): {
                "replicas": 1,
                "labels": {"agent": "eval-runner"},
            },
            ("statefulsets", "research", "other"): {"replicas": 4, "labels": {"agent": "x"}},
            ("cronjobs", "research", "nightly-evals"): {"suspend": False, "labels": {}},
            ("jobs", "research", "finetune-llama"): {"suspend": False, "labels": {}},
        }
        self.owners: dict[tuple[str, str, str], Any] = {
            # (plural, namespace, name): metadata.ownerReferences; None: the field is absent
            ("replicasets", "search", "rerank-agent-7d9f"): [owner("Deployment", "rerank-agent")],
            ("pods", "search", "rerank-agent-7d9f-abc12"): [
                owner("ReplicaSet", "rerank-agent-7d9f")
            ],
            ("pods", "research", "eval-a-0"): [owner("StatefulSet", "eval-a")],
            ("pods", "search", "debug-shell"): None,
            ("replicasets", "search", "orphan-5c4b"): None,
            ("pods", "search", "orphan-5c4b-x2k9p"): [owner("ReplicaSet", "orphan-5c4b")],
            ("replicasets", "search", "canary-6f8d"): [
                owner("Rollout", "canary", "argoproj.io/v1alpha1")
            ],
            ("pods", "search", "canary-6f8d-q7w2e"): [owner("ReplicaSet", "canary-6f8d")],
            ("pods", "research", "finetune-llama-x7k2p"): [
                owner("Job", "finetune-llama", "batch/v1")
            ],
        }
        """Pods and ReplicaSets the fake serves, each with its ownerReferences."""
        self.errors: dict[str, int] = {}
        """Paths answered with this status (after the token check)."""
        self.seen: list[Seen] = []
        self.garbage: bytes | None = None
        """When set, every authorised request is answered 200 with this body."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/{plural:pods}/{name}", self.owned)
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/{plural:replicasets}/{name}", self.owned)
        app.router.add_route(
            "*", "/apis/{group}/{version}/namespaces/{ns}/{plural}", self.collection
        )
        app.router.add_route(
            "*", "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", self.item
        )
        app.router.add_route(
            "*", "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/scale", self.scale
        )
        return app

    async def _check(self, request: web.Request) -> web.Response | None:
        self.seen.append(await _seen(request))
        if request.headers.get("Authorization") != f"Bearer {K8S_TOKEN}":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        if request.method == "PATCH" and request.content_type != "application/merge-patch+json":
            return web.json_response({"kind": "Status", "code": 415}, status=415)
        if request.path in self.errors:
            code = self.errors[request.path]
            return web.json_response({"kind": "Status", "code": code}, status=code)
        if self.garbage is not None:
            return web.Response(body=self.garbage, content_type="application/json")
        return None

    def _get(self, request: web.Request) -> dict[str, Any] | None:
        mi = request.match_info
        return self.objects.get((mi["plural"], mi["ns"], mi["name"]))

    async def collection(self, request: web.Request) -> web.Response:
        denied = await self._check(request)
        if denied:
            return denied
        wanted = dict(
            p.split("=", 1) for p in request.query.get("labelSelector", "").split(",") if p
        )
        mi = request.match_info
        items = [
            {"metadata": {"name": name, "namespace": ns, "labels": obj["labels"]}}
            for (plural, ns, name), obj in self.objects.items()
            if plural == mi["plural"]
            and ns == mi["ns"]
            and all(obj["labels"].get(k) == v for k, v in wanted.items())
        ]
        return web.json_response({"kind": "List", "items": items})

    async def owned(self, request: web.Request) -> web.Response:
        """A pod (core v1) or a ReplicaSet (apps/v1), with its ownerReferences."""
        denied = await self._check(request)
        if denied:
            return denied
        mi = request.match_info
        key = (mi["plural"], mi["ns"], mi["name"])
        if key not in self.owners:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        metadata: dict[str, Any] = {"name": mi["name"], "namespace": mi["ns"]}
        if self.owners[key] is not None:
            metadata["ownerReferences"] = self.owners[key]
        pod = mi["plural"] == "pods"
        return web.json_response(
            {
                "kind": "Pod" if pod else "ReplicaSet",
                "apiVersion": "v1" if pod else "apps/v1",
                "metadata": metadata,
                "spec": {},
            }
        )

    async def scale(self, request: web.Request) -> web.Response:
        denied = await self._check(request)
        if denied:
            return denied
        obj = self._get(request)
        if obj is None:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        if request.method == "PATCH":
            obj["replicas"] = self.seen[-1].body["spec"]["replicas"]
        mi = request.match_info
        return web.json_response(
            {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {"name": mi["name"], "namespace": mi["ns"]},
                "spec": {"replicas": obj["replicas"]},
                "status": {"replicas": obj["replicas"]},
            }
        )

    async def item(self, request: web.Request) -> web.Response:
        denied = await self._check(request)
        if denied:
            return denied
        obj = self._get(request)
        if obj is None:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        if request.method == "PATCH":
            obj["suspend"] = self.seen[-1].body["spec"]["suspend"]
        if request.match_info["plural"] == "jobs":
            spec = {"parallelism": 1, "completions": 1, "suspend": obj["suspend"]}
            return web.json_response({"kind": "Job", "apiVersion": "batch/v1", "spec": spec})
        return web.json_response(
            {"kind": "CronJob", "spec": {"schedule": "0 2 * * *", "suspend": obj["suspend"]}}
        )


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def kube(ca: trustme.CA) -> Iterator[tuple[FakeKubernetes, ThreadedServer]]:
    fake = FakeKubernetes()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = ThreadedServer(fake.app(), ssl_context=server_ctx).start()
    try:
        yield fake, server
    finally:
        server.stop()


@pytest.fixture
def kubeconfig(tmp_path: Path, kube, ca: trustme.CA) -> Path:
    _, server = kube
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": server.url,
                    "certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": K8S_TOKEN}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def action(**labels: str) -> Action:
    return Action("f00d", "2024-05-01T10:00:00+00:00", labels, {}, "pause-k8s", "pause")


def run(target: KubernetesTarget, act: Action) -> tuple[dict[str, Any], str, str]:
    async def go() -> tuple[dict[str, Any], str, str]:
        async with aiohttp.ClientSession() as session:
            target._session = session
            undo = await target.prepare(act)
            applied = await target.apply(act, undo)
            return undo, applied, ""

    return asyncio.run(go())


def undo(target: KubernetesTarget, act: Action, data: dict[str, Any]) -> str:
    async def go() -> str:
        async with aiohttp.ClientSession() as session:
            target._session = session
            return await target.undo(act, data)

    return asyncio.run(go())


def make(kubeconfig: Path, **kw: Any) -> KubernetesTarget:
    settings = KubernetesTargetSettings.model_validate(
        {"type": "kubernetes", "kubeconfig": str(kubeconfig), **kw}
    )
    return KubernetesTarget("k8s", settings, session=None)  # type: ignore[arg-type]


RERANK_AGENT_PAUSED = (
    {
        "namespace": "search",
        "kind": "Deployment",
        "objects": [{"name": "rerank-agent", "replicas": 3}],
    },
    "scaled to 0: Deployment search/rerank-agent (replicas=3)",
)
"""What prepare records and apply says for the pause of Deployment search/rerank-agent."""


def test_deployment_scaled_to_zero_and_restored(kube, kubeconfig):
    fake, _ = kube
    target = make(kubeconfig, kind="Deployment", namespace="${team}", name="${agent}")
    act = action(team="search", agent="rerank-agent")
    data, detail, _ = run(target, act)
    assert (data, detail) == RERANK_AGENT_PAUSED
    path = "/apis/apps/v1/namespaces/search/deployments/rerank-agent/scale"
    assert [(s.method, s.path) for s in fake.seen] == [("GET", path), ("PATCH", path)]
    patch = fake.seen[1]
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.headers["Authorization"] == f"Bearer {K8S_TOKEN}"
    assert patch.body == {"spec": {"replicas": 0}}
    assert fake.objects[("deployments", "search", "rerank-agent")]["replicas"] == 0

    # Undo checks the object is still at 0 before it restores the remembered replicas.
    assert_undo_restores_rerank_agent(fake, target, act, data, seen_before=2)


def assert_undo_restores_rerank_agent(
    fake: FakeKubernetes, target: KubernetesTarget, act: Action, data: Any, seen_before: int
) -> None:
    """Undo of the pause of Deployment search/rerank-agent (3 replicas): a GET of its
    scale (still at 0?), then a PATCH back to 3, and nothing else."""
    scale = "/apis/apps/v1/namespaces/search/deployments/rerank-agent/scale"
    assert undo(target, act, data) == "restored: Deployment search/rerank-agent (replicas=3)"
    assert [(s.method, s.path, s.body) for s in fake.seen[seen_before:]] == [
        ("GET", scale, None),
        ("PATCH", scale, {"spec": {"replicas": 3}}),
    ]
    assert fake.objects[("deployments", "search", "rerank-agent")]["replicas"] == 3


def test_undo_leaves_an_object_scaled_by_hand_since_the_pause(kube, kubeconfig):
    fake, _ = kube
    target = make(kubeconfig, kind="Deployment", namespace="${team}", name="${agent}")
    act = action(team="search", agent="rerank-agent")
    data, _, _ = run(target, act)
    fake.objects[("deployments", "search", "rerank-agent")]["replicas"] = 5  # on-call, by hand
    assert undo(target, act, data) == (
        "changed since the pause, left as they are: Deployment search/rerank-agent (replicas=5)"
    )
    assert fake.objects[("deployments", "search", "rerank-agent")]["replicas"] == 5
    assert [s.method for s in fake.seen[2:]] == ["GET"]


def test_statefulsets_by_label_selector(kube, kubeconfig):
    fake, _ = kube
    target = make(kubeconfig, kind="StatefulSet", namespace="${team}", selector="agent=${agent}")
    act = action(team="research", agent="eval-runner")
    data, _, _ = run(target, act)
    listing = fake.seen[0]
    assert (listing.method, listing.path, listing.query) == (
        "GET",
        "/apis/apps/v1/namespaces/research/statefulsets",
        {"labelSelector": "agent=eval-runner"},
    )
    assert data["objects"] == [{"name": "eval-a", "replicas": 2}, {"name": "eval-b", "replicas": 1}]
    replicas = {k[2]: v["replicas"] for k, v in fake.objects.items() if k[0] == "statefulsets"}
    assert replicas == {"eval-a": 0, "eval-b": 0, "other": 4}
    undo(target, act, data)
    replicas = {k[2]: v["replicas"] for k, v in fake.objects.items() if k[0] == "statefulsets"}
    assert replicas == {"eval-a": 2, "eval-b": 1, "other": 4}


def test_cronjob_suspended_and_restored(kube, kubeconfig):
    fake, _ = kube
    target = make(kubeconfig, kind="CronJob", namespace="research", name="nightly-evals")
    act = action(team="research")
    data, detail, _ = run(target, act)
    path = "/apis/batch/v1/namespaces/research/cronjobs/nightly-evals"
    assert [(s.method, s.path, s.body) for s in fake.seen] == [
        ("GET", path, None),
        ("PATCH", path, {"spec": {"suspend": True}}),
    ]
    assert fake.seen[1].headers["Content-Type"] == "application/merge-patch+json"
    assert detail == "suspended: CronJob research/nightly-evals (suspend=false)"
    assert fake.objects[("cronjobs", "research", "nightly-evals")]["suspend"] is True
    undo(target, act, data)
    assert fake.seen[-1].body == {"spec": {"suspend": False}}
    assert fake.objects[("cronjobs", "research", "nightly-evals")]["suspend"] is False


def test_missing_object_and_bad_names_are_not_retryable(kube, kubeconfig):
    target = make(kubeconfig, kind="Deployment", namespace="${team}", name="${agent}")
    with pytest.raises(TargetError, match="HTTP 404") as err:
        run(target, action(team="search", agent="nope"))
    assert err.value.retryable is False
    with pytest.raises(TargetError, match="not a valid Kubernetes name") as err:
        run(target, action(team="search", agent="Bad_Name"))
    assert err.value.retryable is False
    with pytest.raises(TargetError, match="no label 'agent'"):
        run(target, action(team="search"))
    selector = make(kubeconfig, kind="StatefulSet", namespace="research", selector="agent=${agent}")
    with pytest.raises(TargetError, match="no StatefulSet in namespace research matches"):
        run(selector, action(agent="ghost"))


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b"[" * 100_000, b"[1, 2]"])
def test_answer_that_is_not_a_json_object_is_a_retryable_error(kube, kubeconfig, body):
    # A proxy in front of the API server, or a broken one: deeper JSON than the parser
    # recurses is bad input too, not a RecursionError out of the actuator.
    fake, _ = kube
    fake.garbage = body
    target = make(kubeconfig, kind="Deployment", namespace="${team}", name="${agent}")
    with pytest.raises(TargetError) as err:
        run(target, action(team="search", agent="rerank-agent"))
    assert err.value.retryable is True
    assert fake.objects[("deployments", "search", "rerank-agent")]["replicas"] == 3


def _in_cluster(server: ThreadedServer, tmp_path: Path, ca: trustme.CA) -> KubernetesTarget:
    """The in-cluster shape: a server URL, a token file (tmp_path/token), a CA file."""
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    settings = KubernetesTargetSettings(
        type="kubernetes",
        kind="Deployment",
        namespace="search",
        name="rerank-agent",
        api_server=server.url,
        token_file=str(tmp_path / "token"),
        ca_file=str(tmp_path / "ca.crt"),
    )
    return KubernetesTarget("k8s", settings, None)  # type: ignore[arg-type]


def test_explicit_api_server_with_token_file_and_ca_file(kube, tmp_path, ca):
    _, server = kube
    (tmp_path / "token").write_text(K8S_TOKEN + "\n")
    data, _, _ = run(_in_cluster(server, tmp_path, ca), action())
    assert data["objects"] == [{"name": "rerank-agent", "replicas": 3}]


@pytest.mark.parametrize("content", [None, b"", b"tok\xffen"])
def test_unreadable_token_file_is_a_retryable_error(kube, tmp_path, ca, content):
    """Missing, empty or not UTF-8 when a call is made (the kubelet rewrites the file):
    a retryable target error that names the file, not a crash, never the token."""
    _, server = kube
    token = tmp_path / "token"
    if content is not None:
        token.write_bytes(content)
    with pytest.raises(TargetError, match=f"kubernetes token: .*{token.name}") as err:
        run(_in_cluster(server, tmp_path, ca), action())
    assert err.value.retryable is True
    assert "tok" not in str(err.value).replace("token", "")


def test_wrong_token_is_an_error_and_untrusted_tls_is_refused(kube, kubeconfig, tmp_path):
    doc = yaml.safe_load(kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = "wrong"
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(TargetError, match="HTTP 401"):
        run(make(bad, kind="Deployment", namespace="search", name="rerank-agent"), action())
    del doc["clusters"][0]["cluster"]["certificate-authority-data"]
    doc["users"][0]["user"]["token"] = K8S_TOKEN
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(TargetError, match=r"(?i)certificate|SSL") as err:
        run(make(bad, kind="Deployment", namespace="search", name="rerank-agent"), action())
    assert err.value.retryable is True


def test_kubeconfig_errors_are_actionable(tmp_path):
    from aispend.actuators.targets.kubeauth import KubeConfigError

    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        from_kubeconfig(tmp_path / "missing")
    (tmp_path / "kc").write_text(yaml.safe_dump({"current-context": "x", "contexts": []}))
    with pytest.raises(KubeConfigError, match="no context named 'x'"):
        from_kubeconfig(tmp_path / "kc")


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        ({"certificate-authority-data": "bm90IGEgY2VydA=="}, {"token": "t"}, "SSLError"),
        ({"certificate-authority-data": "%%%"}, {"token": "t"}, "not base64"),
        ({}, {"client-certificate-data": "bm90", "client-key-data": "a b"}, "not base64"),
        ({}, {"client-certificate-data": "bm90", "client-key-data": "bm90"}, "SSLError"),
        ({}, "not-a-mapping", "AttributeError"),
    ],
)
def test_bad_kubeconfig_contents_are_config_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cluster: dict[str, Any],
    user: Any,
    message: str,
) -> None:
    """Not a traceback at start: preflight reports KubeConfigError in one line, and no
    temporary copy of a client certificate or key is left behind."""
    import tempfile

    from aispend.actuators.targets.kubeauth import KubeConfigError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    doc = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443", **cluster}}],
        "users": [{"name": "u", "user": user}],
    }
    (tmp_path / "kc").write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeConfigError, match=message):
        from_kubeconfig(tmp_path / "kc")
    assert not list(tmp_path.glob("aispend-kube-*"))


def _pause_actions(kubeconfig: Path) -> Any:
    from tests.actuator.conftest import config_with_actions

    return config_with_actions(
        {
            "dry_run": False,
            "rules": [
                {
                    "name": "pause-deploy",
                    "match": {"action": "pause"},
                    "target": "k8s",
                    "mode": "pause",
                }
            ],
            "targets": {
                "k8s": {
                    "type": "kubernetes",
                    "kind": "Deployment",
                    "namespace": "${team}",
                    "name": "${agent}",
                    "kubeconfig": str(kubeconfig),
                }
            },
        }
    )


def _post_each(
    config: Any,
    db: Path,
    bodies: list[dict[str, Any]],
    fake: FakeKubernetes,
    results: list[str] | None = None,
) -> list[int]:
    """Post each body to a freshly started actuator (a restart between every two) and
    return the Deployment's replicas after each. `results`: each answer's (all "ok")."""
    import requests

    from aispend.actuators.app import build_app
    from aispend.actuators.store import Store
    from tests.actuator.fakes import TOKEN

    teams = {t.name: t.criticality for t in config.teams}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    replicas = []
    for body, result in zip(bodies, results or ["ok"] * len(bodies), strict=True):
        store = Store(db)
        server = ThreadedServer(build_app(config.actions, teams, store, TOKEN)).start()
        try:
            r = requests.post(f"{server.url}/alerts", json=body, headers=headers, timeout=30)
            assert (r.status_code, r.json()["alerts"][0]["result"]) == (200, result), r.text
        finally:
            server.stop()
            store.close()
        replicas.append(fake.objects[("deployments", "search", "rerank-agent")]["replicas"])
    return replicas


def test_pause_through_actuator_and_undo_after_restart(kube, kubeconfig, tmp_path):
    """The remembered replicas live in the state DB: a restarted actuator restores them."""
    from tests.actuator.fakes import alert, payload

    fake, _ = kube
    fp = "00000000000d3910"
    bodies = [
        payload(alert(fp, action="pause")),
        payload(alert(fp, status="resolved", action="pause")),
    ]
    assert _post_each(_pause_actions(kubeconfig), tmp_path / "s.db", bodies, fake) == [0, 3]
    # Undo restored the remembered 3, not the 0 its own check read.
    assert [(s.method, s.body) for s in fake.seen] == [
        ("GET", None),
        ("PATCH", {"spec": {"replicas": 0}}),
        ("GET", None),
        ("PATCH", {"spec": {"replicas": 3}}),
    ]


@pytest.mark.parametrize("last", ["first", "second"])
def test_two_alerts_pausing_one_deployment(kube, kubeconfig, tmp_path, last):
    """Two idle GPUs of one workload: two alerts, one Deployment. It stays at 0 until
    both have resolved, then gets its original 3 back (not the 0 the second one read)."""
    from tests.actuator.fakes import alert, payload

    fake, _ = kube
    a = alert("00000000000000a1", action="pause", alertname="AISpendGPUIdle", gpu="0")
    b = alert("00000000000000b2", action="pause", alertname="AISpendGPUIdle", gpu="1")
    first, second = (a, b) if last == "second" else (b, a)
    bodies = [payload(a), payload(b)] + [
        payload({**x, "status": "resolved"}) for x in (first, second)
    ]
    assert _post_each(_pause_actions(kubeconfig), tmp_path / "s.db", bodies, fake) == [0, 0, 0, 3]


def test_a_second_pause_after_a_scale_up_by_hand_keeps_the_hands_replicas(
    kube, kubeconfig, tmp_path
):
    """A pauses the Deployment (3 -> 0), on-call scales it to 5, B pauses it again: once
    both resolved it was back at A's 3. B keeps the 5 it read; A, overridden by the
    hand, has nothing left to undo."""
    from tests.actuator.fakes import alert, payload

    fake, _ = kube
    a = alert("00000000000000a1", action="pause", alertname="AISpendGPUIdle", gpu="0")
    b = alert("00000000000000b2", action="pause", alertname="AISpendGPUIdle", gpu="1")
    config, db = _pause_actions(kubeconfig), tmp_path / "s.db"
    assert _post_each(config, db, [payload(a)], fake) == [0]
    fake.objects[("deployments", "search", "rerank-agent")]["replicas"] = 5
    bodies = [
        payload(b),
        payload({**a, "status": "resolved"}),
        payload({**b, "status": "resolved"}),
    ]
    results = ["ok", "nothing to undo", "ok"]
    assert _post_each(config, db, bodies, fake, results) == [0, 0, 5]


def test_refiring_alert_keeps_the_original_replicas(kube, kubeconfig, tmp_path):
    """The same series fires again with a new startsAt before its resolve arrived: the
    new firing supersedes the old one and takes over its original state."""
    from tests.actuator.fakes import alert, payload

    fake, _ = kube
    fp = "00000000000f1a90"
    bodies = [
        payload(alert(fp, action="pause")),
        payload(alert(fp, action="pause", starts_at="2024-05-01T10:20:00Z")),
        payload(alert(fp, status="resolved", action="pause", starts_at="2024-05-01T10:20:00Z")),
    ]
    assert _post_each(_pause_actions(kubeconfig), tmp_path / "s.db", bodies, fake) == [0, 0, 3]


def test_targets_on_one_api_server_share_an_objects_scope(kube, kubeconfig):
    """The engine lets two targets share holds on an object only when they reach the
    same API server: by name and by selector here, one cluster."""
    by_name = make(kubeconfig, kind="Deployment", namespace="search", name="rerank-agent")
    by_selector = make(kubeconfig, kind="Deployment", namespace="search", selector="a=b")
    _, server = kube
    assert by_name.objects_scope == by_selector.objects_scope == server.url.rstrip("/")


def test_an_object_deleted_since_the_pause_has_nothing_to_restore(kube, kubeconfig):
    """A redeploy deleted the paused Deployment: undo has nothing to restore, and says
    so. It used to fail for good on the 404 (undo_failed, retried for ever)."""
    fake, _ = kube
    target = make(kubeconfig, kind="Deployment", namespace="${team}", name="${agent}")
    act = action(team="search", agent="rerank-agent")
    data, _, _ = run(target, act)
    del fake.objects[("deployments", "search", "rerank-agent")]
    assert undo(target, act, data) == (
        "deleted since the pause, nothing to restore: Deployment search/rerank-agent"
    )


@pytest.mark.parametrize(
    "spelling", ["https://10.96.0.1", "https://10.96.0.1:443/", "HTTPS://10.96.0.1:443"]
)
def test_one_api_server_spelt_in_several_ways_is_one_scope(spelling: str) -> None:
    """In-cluster gives https://HOST:443; a config may say https://HOST: one server."""
    from aispend.actuators.targets.kubernetes import _server_scope

    assert _server_scope(spelling) == _server_scope("https://10.96.0.1:443")
    assert _server_scope(spelling) != _server_scope("https://10.96.0.2:443")


def test_a_server_with_a_bad_port_still_builds_its_target(kubeconfig: Path) -> None:
    """Its requests fail and say why, as before; building the target must not (a
    ValueError here stopped the whole actuator at start)."""
    target = make(
        kubeconfig, kind="Deployment", namespace="search", name="x", api_server="https://k8s:6443x"
    )
    assert target.objects_scope == "https://k8s:6443x"


def test_only_zero_replicas_or_a_suspended_cronjob_is_as_the_pause_left_it(kubeconfig):
    """What a second alert's prepare reads: the first alert's pause (it takes over the
    original state), or a state set by hand since (it keeps it)."""
    target = make(kubeconfig, kind="Deployment", namespace="${team}", name="${agent}")
    assert target.as_applied({"replicas": 0})
    assert not target.as_applied({"replicas": 5})
    assert target.as_applied({"suspend": True})
    assert not target.as_applied({"suspend": False})


POD_PATH = "/api/v1/namespaces/search/pods/rerank-agent-7d9f-abc12"
RS_PATH = "/apis/apps/v1/namespaces/search/replicasets/rerank-agent-7d9f"


def test_pod_of_a_deployment_scales_that_deployment_and_undo_restores_it(kube, kubeconfig):
    """AISpendGPUIdle names the pod holding the GPU: its ReplicaSet's Deployment is
    paused. Undo uses the recorded name: the pod is gone after the scale to 0."""
    fake, _ = kube
    target = make(kubeconfig, kind="Deployment", namespace="${namespace}", pod="${pod}")
    act = action(namespace="search", pod="rerank-agent-7d9f-abc12", team="search")
    data, detail, _ = run(target, act)
    assert (data, detail) == RERANK_AGENT_PAUSED
    scale = "/apis/apps/v1/namespaces/search/deployments/rerank-agent/scale"
    assert [(s.method, s.path) for s in fake.seen] == [
        ("GET", POD_PATH),
        ("GET", RS_PATH),
        ("GET", scale),
        ("PATCH", scale),
    ]
    assert all(s.headers["Authorization"] == f"Bearer {K8S_TOKEN}" for s in fake.seen)
    assert fake.objects[("deployments", "search", "rerank-agent")]["replicas"] == 0

    del fake.owners[("pods", "search", "rerank-agent-7d9f-abc12")]  # as the scale-down does
    del fake.owners[("replicasets", "search", "rerank-agent-7d9f")]
    assert_undo_restores_rerank_agent(fake, target, act, data, seen_before=4)


def test_pod_of_a_statefulset_scales_that_statefulset(kube, kubeconfig):
    fake, _ = kube
    target = make(kubeconfig, kind="StatefulSet", namespace="${namespace}", pod="${pod}")
    act = action(namespace="research", pod="eval-a-0")
    data, detail, _ = run(target, act)
    assert data["objects"] == [{"name": "eval-a", "replicas": 2}]
    assert detail == "scaled to 0: StatefulSet research/eval-a (replicas=2)"
    scale = "/apis/apps/v1/namespaces/research/statefulsets/eval-a/scale"
    assert [(s.method, s.path) for s in fake.seen] == [
        ("GET", "/api/v1/namespaces/research/pods/eval-a-0"),
        ("GET", scale),
        ("PATCH", scale),
    ]
    replicas = {k[2]: v["replicas"] for k, v in fake.objects.items() if k[0] == "statefulsets"}
    assert replicas == {"eval-a": 0, "eval-b": 1, "other": 4}
    undo(target, act, data)
    assert fake.objects[("statefulsets", "research", "eval-a")]["replicas"] == 2


@pytest.mark.parametrize(
    ("kind", "namespace", "pod", "message"),
    [
        (
            "Deployment",
            "research",
            "eval-a-0",
            "pod research/eval-a-0 is controlled by StatefulSet eval-a, not a Deployment",
        ),
        (
            "StatefulSet",
            "search",
            "rerank-agent-7d9f-abc12",
            "pod search/rerank-agent-7d9f-abc12 is controlled by ReplicaSet"
            " rerank-agent-7d9f, not a StatefulSet",
        ),
        (
            "Deployment",
            "search",
            "debug-shell",
            "pod search/debug-shell has no controller (a bare pod): nothing to pause",
        ),
        (
            "Deployment",
            "search",
            "orphan-5c4b-x2k9p",
            "pod search/orphan-5c4b-x2k9p: ReplicaSet search/orphan-5c4b has no"
            " Deployment controller",
        ),
        (
            "Deployment",
            "search",
            "canary-6f8d-q7w2e",
            "pod search/canary-6f8d-q7w2e: ReplicaSet search/canary-6f8d is controlled by"
            " Rollout canary (argoproj.io/v1alpha1), not a Deployment",
        ),
        (
            "Deployment",
            "search",
            "gone-7d9f-zzzzz",
            "pod search/gone-7d9f-zzzzz not found (rescheduled or deleted since the alert)",
        ),
        ("Deployment", "search", "Bad_Pod", "pod 'Bad_Pod' is not a valid Kubernetes name"),
        (
            ["Deployment", "StatefulSet"],
            "research",
            "finetune-llama-x7k2p",
            "pod research/finetune-llama-x7k2p is controlled by Job finetune-llama, not a"
            " Deployment or StatefulSet",
        ),
        (
            ["Job"],
            "research",
            "eval-a-0",
            "pod research/eval-a-0 is controlled by StatefulSet eval-a, not a Job",
        ),
    ],
)
def test_pod_that_leads_to_no_workload_of_the_kind_is_not_retryable(
    kube, kubeconfig, kind, namespace, pod, message
):
    fake, _ = kube
    target = make(kubeconfig, kind=kind, namespace="${namespace}", pod="${pod}")
    with pytest.raises(TargetError) as err:
        run(target, action(namespace=namespace, pod=pod))
    assert str(err.value).startswith(message)
    assert err.value.retryable is False
    assert all(s.method == "GET" for s in fake.seen)
    assert fake.objects[("deployments", "search", "rerank-agent")]["replicas"] == 3
    assert fake.objects[("statefulsets", "research", "eval-a")]["replicas"] == 2


@pytest.mark.parametrize(
    "refs",
    [
        "ReplicaSet/rerank-agent-7d9f",
        {"kind": "ReplicaSet", "name": "rerank-agent-7d9f", "controller": True},
        [["ReplicaSet", "rerank-agent-7d9f"]],
        [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True}],
        [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": 7, "controller": True}],
    ],
)
def test_malformed_owner_references_are_a_clear_error(kube, kubeconfig, refs):
    """Not a KeyError or TypeError out of the target: a message that names the pod."""
    fake, _ = kube
    fake.owners[("pods", "search", "rerank-agent-7d9f-abc12")] = refs
    target = make(kubeconfig, kind="Deployment", namespace="search", pod="${pod}")
    with pytest.raises(TargetError, match="pod search/rerank-agent-7d9f-abc12: ") as err:
        run(target, action(pod="rerank-agent-7d9f-abc12"))
    assert "ownerReferences" in str(err.value) or "controller reference" in str(err.value)
    assert err.value.retryable is False
    assert [s.path for s in fake.seen] == [POD_PATH]


@pytest.mark.parametrize("path", [POD_PATH, RS_PATH])
def test_api_server_errors_on_the_pod_path_stay_retryable(kube, kubeconfig, path):
    fake, _ = kube
    fake.errors[path] = 503
    target = make(kubeconfig, kind="Deployment", namespace="search", pod="${pod}")
    with pytest.raises(TargetError, match=f"GET {path}: HTTP 503") as err:
        run(target, action(pod="rerank-agent-7d9f-abc12"))
    assert err.value.retryable is True
    assert err.value.status == 503
    assert fake.objects[("deployments", "search", "rerank-agent")]["replicas"] == 3


def test_pod_settings_one_way_to_find_the_object_and_no_cronjob():
    from pydantic import ValidationError

    base = {"type": "kubernetes", "namespace": "${namespace}", "pod": "${pod}"}
    assert KubernetesTargetSettings.model_validate({**base, "kind": "StatefulSet"}).pod == "${pod}"
    for extra in ({"name": "x"}, {"selector": "a=b"}):
        with pytest.raises(ValidationError, match="set exactly one of name, selector or pod"):
            KubernetesTargetSettings.model_validate({**base, "kind": "Deployment", **extra})
    with pytest.raises(ValidationError, match="set exactly one of name, selector or pod"):
        KubernetesTargetSettings.model_validate(
            {"type": "kubernetes", "kind": "Deployment", "namespace": "x"}
        )
    with pytest.raises(
        ValidationError, match="pod: works with kind Deployment, StatefulSet or Job"
    ):
        KubernetesTargetSettings.model_validate({**base, "kind": "CronJob"})
    with pytest.raises(
        ValidationError, match="pod: works with kind Deployment, StatefulSet or Job"
    ):
        KubernetesTargetSettings.model_validate({**base, "kind": ["Job", "CronJob"]})
    with pytest.raises(ValidationError, match="a list of kinds needs pod:"):
        KubernetesTargetSettings.model_validate(
            {"type": "kubernetes", "kind": ["Job"], "namespace": "x", "name": "y"}
        )
    for kinds in ([], ["Job", "Job"]):
        with pytest.raises(ValidationError, match="list each kind once, at least one"):
            KubernetesTargetSettings.model_validate({**base, "kind": kinds})


def test_pod_of_a_job_suspends_that_job_and_undo_resumes_it(kube, kubeconfig):
    """A training Job holding an idle GPU: the target that pauses Deployments and
    StatefulSets refused it ("not a Deployment") and AISpendActuatorFailing paged. With
    the kinds listed, the pod's own controller decides: the Job is suspended (its pods
    are deleted, the GPU freed), and undo resumes it."""
    fake, _ = kube
    target = make(
        kubeconfig,
        kind=["Deployment", "StatefulSet", "Job"],
        namespace="${namespace}",
        pod="${pod}",
    )
    act = action(namespace="research", pod="finetune-llama-x7k2p")
    data, detail, _ = run(target, act)
    job = "/apis/batch/v1/namespaces/research/jobs/finetune-llama"
    assert data == {
        "namespace": "research",
        "kind": "Job",
        "objects": [{"name": "finetune-llama", "suspend": False}],
    }
    assert detail == "suspended: Job research/finetune-llama (suspend=false)"
    assert [(s.method, s.path, s.body) for s in fake.seen] == [
        ("GET", "/api/v1/namespaces/research/pods/finetune-llama-x7k2p", None),
        ("GET", job, None),
        ("PATCH", job, {"spec": {"suspend": True}}),
    ]
    assert fake.objects[("jobs", "research", "finetune-llama")]["suspend"] is True
    del fake.owners[("pods", "research", "finetune-llama-x7k2p")]  # deleted by the suspend
    assert undo(target, act, data) == "restored: Job research/finetune-llama (suspend=false)"
    assert fake.seen[-1].path == job and fake.seen[-1].body == {"spec": {"suspend": False}}
    assert fake.objects[("jobs", "research", "finetune-llama")]["suspend"] is False

    # The same target still scales the Deployment of a Deployment's pod.
    data, detail, _ = run(target, action(namespace="search", pod="rerank-agent-7d9f-abc12"))
    assert (data, detail) == RERANK_AGENT_PAUSED
