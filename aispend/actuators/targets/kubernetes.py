"""Kubernetes target: scale a Deployment/StatefulSet to 0, or suspend a CronJob or Job.

Plain REST on the API server (no client library needed for four calls):
- Deployment/StatefulSet: `GET .../{kind}s/{name}/scale` remembers `spec.replicas`,
  `PATCH .../scale` with `application/merge-patch+json` `{"spec": {"replicas": 0}}`;
  undo patches the remembered replicas back if the object is still at 0.
- CronJob/Job: `GET /apis/batch/v1/namespaces/{ns}/{cronjobs,jobs}/{name}` remembers
  `spec.suspend`, `PATCH` `{"spec": {"suspend": true}}`; undo restores it if the
  object is still suspended. A suspended Job's pods are deleted; resumed, it starts
  them anew (as a Deployment scaled back up does).
Objects are named by a template over the alert labels, found by a label selector, or
found through a pod (`pod: ${pod}`): `GET /api/v1/namespaces/{ns}/pods/{pod}`, its
controlling ownerReference, and for a Deployment the ReplicaSet's (`GET
/apis/apps/v1/namespaces/{ns}/replicasets/{rs}`). With `pod:`, `kind` may list kinds
(Deployment, StatefulSet, Job): the one that controls the pod is paused.
Only prepare resolves names; undo uses the ones it recorded (the pod is gone by then).
Credentials: the in-cluster service account, else a kubeconfig (see kubeauth). Its
role needs `get` and `patch` on the kind's `scale` subresource (or on cronjobs, jobs),
`list` on the kind for `selector:`, and `get` on pods and replicasets for `pod:`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from aispend.actuators.settings import KubernetesTargetSettings
from aispend.actuators.targets.base import Action, TargetError, render, status_retryable
from aispend.actuators.targets.kubeauth import KubeAuth, KubeConfigError, load_auth
from aispend.parsing import loads_json

MERGE_PATCH = "application/merge-patch+json"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_GROUPS = {
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "CronJob": ("batch/v1", "cronjobs"),
    "Job": ("batch/v1", "jobs"),
}
_SUSPENDED = frozenset({"CronJob", "Job"})
"""Kinds paused by `spec.suspend` rather than scaled to 0."""


class KubernetesTarget:
    type = "kubernetes"

    def __init__(
        self,
        name: str,
        settings: KubernetesTargetSettings,
        session: aiohttp.ClientSession,
        auth: KubeAuth | None = None,
    ):
        self.name = name
        self.settings = settings
        self._session = session
        self._auth = auth or load_auth(settings)
        self.objects_scope = _server_scope(self._auth.server)
        self.kinds = settings.kinds()

    # ------------------------------------------------------------ target protocol

    async def prepare(self, action: Action) -> dict[str, Any]:
        namespace = _checked(render(self.settings.namespace, action.labels), "namespace")
        kind, names = await self._names(namespace, action)
        objects = []
        for obj in names:
            current = await self._request("GET", _object_path(kind, namespace, obj))
            objects.append({"name": obj, **_state(kind, current)})
        return {"namespace": namespace, "kind": kind, "objects": objects}

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        kind = undo_data["kind"]
        suspended = kind in _SUSPENDED
        patch = {"spec": {"suspend": True}} if suspended else {"spec": {"replicas": 0}}
        for obj in undo_data["objects"]:
            await self._request(
                "PATCH", _object_path(kind, undo_data["namespace"], obj["name"]), patch
            )
        verb = "suspended" if suspended else "scaled to 0"
        return f"{verb}: {self._describe(undo_data)}"

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        """Restore each object that is still as apply left it; one changed since (scaled
        by hand) is left as it is."""
        restored, left, gone = [], [], []
        for obj in undo_data["objects"]:
            path = _object_path(undo_data["kind"], undo_data["namespace"], obj["name"])
            name = _key(undo_data, obj["name"])
            try:
                state = _state(undo_data["kind"], await self._request("GET", path))
            except TargetError as exc:
                if exc.status != 404:
                    raise
                gone.append(name)  # deleted since the pause: nothing to restore
                continue
            ((key, value),) = state.items()
            if not self.as_applied(state):
                left.append(f"{name} ({key}={str(value).lower()})")
                continue
            await self._request("PATCH", path, {"spec": {key: obj[key]}})
            restored.append(obj)
        parts = []
        if restored:
            parts.append(f"restored: {self._describe({**undo_data, 'objects': restored})}")
        if left:
            parts.append("changed since the pause, left as they are: " + ", ".join(left))
        if gone:
            parts.append("deleted since the pause, nothing to restore: " + ", ".join(gone))
        return "; ".join(parts) or "nothing to restore"

    def originals(self, undo_data: dict[str, Any]) -> dict[str, Any]:
        return {
            _key(undo_data, obj["name"]): {k: v for k, v in obj.items() if k != "name"}
            for obj in undo_data["objects"]
        }

    def with_originals(
        self, undo_data: dict[str, Any], originals: dict[str, Any]
    ) -> dict[str, Any]:
        keyed = ((_key(undo_data, obj["name"]), obj["name"]) for obj in undo_data["objects"])
        objects = [{"name": name, **originals[key]} for key, name in keyed if key in originals]
        return {**undo_data, "objects": objects}

    def as_applied(self, state: Any) -> bool:
        """Whether `_state` is as the pause leaves it: suspended, or scaled to 0."""
        if "suspend" in state:
            return state["suspend"] is True
        return int(state.get("replicas", 0)) == 0

    # ------------------------------------------------------------ helpers

    async def _names(self, namespace: str, action: Action) -> tuple[str, list[str]]:
        """The kind and names of the objects to pause."""
        kind: str = self.kinds[0]  # the only one, but with `pod:`
        if self.settings.name is not None:
            return kind, [_checked(render(self.settings.name, action.labels), "name")]
        if self.settings.pod is not None:
            pod = _checked(render(self.settings.pod, action.labels), "pod")
            kind, name = await self._pod_workload(namespace, pod)
            return kind, [_checked(name, "name")]
        selector = render(self.settings.selector or "", action.labels)
        listing = await self._request(
            "GET", _collection(kind, namespace), params={"labelSelector": selector}
        )
        names = sorted(
            str(item["metadata"]["name"])
            for item in listing.get("items") or []
            if isinstance(item, dict) and "metadata" in item
        )
        if not names:
            raise TargetError(f"no {kind} in namespace {namespace} matches {selector!r}", False)
        return kind, names

    async def _pod_workload(self, namespace: str, pod: str) -> tuple[str, str]:
        """The kind and name of the object of one of `kinds` that controls `pod`: the
        Deployment that owns its ReplicaSet, its StatefulSet, or its Job. Anything else
        is not retryable: an answer about this pod will not change."""
        kinds = self.kinds
        wanted = " or ".join(kinds)
        where = f"pod {namespace}/{pod}"
        ns = quote(namespace, safe="")
        try:
            found = await self._request(
                "GET", f"/api/v1/namespaces/{ns}/pods/{quote(pod, safe='')}"
            )
        except TargetError as exc:
            if exc.status == 404:
                raise TargetError(
                    f"{where} not found (rescheduled or deleted since the alert)", False, 404
                ) from None
            raise
        owner = _controller(found, where)
        if owner is None:
            raise TargetError(f"{where} has no controller (a bare pod): nothing to pause", False)
        for kind in ("StatefulSet", "Job"):
            if kind in kinds and owner[:2] == (_GROUPS[kind][0].partition("/")[0], kind):
                return kind, owner[2]
        if "Deployment" not in kinds or owner[:2] != ("apps", "ReplicaSet"):
            raise TargetError(f"{where} is controlled by {_owner(owner)}, not a {wanted}", False)
        rs = f"ReplicaSet {namespace}/{owner[2]}"
        try:
            found = await self._request(
                "GET", f"/apis/apps/v1/namespaces/{ns}/replicasets/{quote(owner[2], safe='')}"
            )
        except TargetError as exc:
            raise TargetError(f"{where}: {exc}", exc.retryable, exc.status) from None
        rs_owner = _controller(found, f"{where}: {rs}")
        if rs_owner is None:
            raise TargetError(
                f"{where}: {rs} has no Deployment controller: nothing to scale", False
            )
        if rs_owner[:2] != ("apps", "Deployment"):
            raise TargetError(
                f"{where}: {rs} is controlled by {_owner(rs_owner)}, not a Deployment", False
            )
        return "Deployment", rs_owner[2]

    def _describe(self, undo_data: dict[str, Any]) -> str:
        parts = []
        for obj in undo_data["objects"]:
            was = (
                f"suspend={str(obj['suspend']).lower()}"
                if "suspend" in obj
                else f"replicas={obj['replicas']}"
            )
            parts.append(f"{_key(undo_data, obj['name'])} ({was})")
        return ", ".join(parts)

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self._auth.server.rstrip("/") + path
        try:
            auth = self._auth.headers()
        except KubeConfigError as exc:  # the token file is gone or broken: it may come back
            raise TargetError(f"{method} {path}: {exc}", True) from None
        headers = {"Accept": "application/json", **auth}
        if body is not None:
            headers["Content-Type"] = MERGE_PATCH
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._session.request(
                method,
                url,
                json=body,
                params=params,
                headers=headers,
                timeout=timeout,
                ssl=self._auth.ssl if self._auth.ssl is not None else True,
            ) as resp:
                if resp.status >= 300:
                    text = (await resp.text(errors="replace"))[:300]
                    raise TargetError(
                        f"{method} {path}: HTTP {resp.status}: {text}",
                        status_retryable(resp.status),
                        resp.status,
                    )
                data = await resp.json(content_type=None, loads=loads_json)
        except TargetError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise TargetError(f"{method} {url}: {type(exc).__name__}: {exc}", True) from exc
        if not isinstance(data, dict):
            raise TargetError(f"{method} {path}: expected a JSON object", True)
        return data


def _collection(kind: str, namespace: str) -> str:
    group, plural = _GROUPS[kind]
    return f"/apis/{group}/namespaces/{quote(namespace, safe='')}/{plural}"


def _object_path(kind: str, namespace: str, obj: str) -> str:
    path = f"{_collection(kind, namespace)}/{quote(obj, safe='')}"
    return path if kind in _SUSPENDED else path + "/scale"


def _state(kind: str, current: dict[str, Any]) -> dict[str, Any]:
    """The one field of an object (as the API answered it) that the pause sets: a
    CronJob's or Job's `suspend`, else the scale's `replicas`."""
    spec = current.get("spec") or {}
    if kind in _SUSPENDED:
        return {"suspend": bool(spec.get("suspend", False))}
    return {"replicas": int(spec.get("replicas", 0))}


def _controller(obj: dict[str, Any], where: str) -> tuple[str, str, str, str] | None:
    """The controlling ownerReference of an object as the API answered it: (API group,
    kind, name, apiVersion); None when it has none. A malformed answer is a
    TargetError (not retryable) that names `where`."""
    metadata = obj.get("metadata")
    refs = metadata.get("ownerReferences") if isinstance(metadata, dict) else None
    if refs is None:
        if not isinstance(metadata, dict):
            raise TargetError(f"{where}: the answer has no metadata object", False)
        return None
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise TargetError(
            f"{where}: metadata.ownerReferences is not a list of objects: {str(refs)[:200]}",
            False,
        )
    for ref in refs:
        if ref.get("controller") is not True:
            continue
        fields = [ref.get(k) for k in ("apiVersion", "kind", "name")]
        if not all(isinstance(v, str) and v for v in fields):
            raise TargetError(
                f"{where}: its controller reference lacks apiVersion, kind or name:"
                f" {str(ref)[:200]}",
                False,
            )
        api_version, kind, name = (str(v) for v in fields)
        group = api_version.rpartition("/")[0]
        return group, kind, name, api_version
    return None


def _owner(owner: tuple[str, str, str, str]) -> str:
    """An owner as messages name it: `StatefulSet ranker`, its API version added when
    not the kind's own (an OpenKruise StatefulSet is not one the apps/v1 scale can
    reach)."""
    group, kind, name, api_version = owner
    own = _GROUPS.get(kind, ("apps/v1",))[0].partition("/")[0]
    return f"{kind} {name}" + ("" if group == own else f" ({api_version})")


def _key(undo_data: dict[str, Any], name: str) -> str:
    """One object, as details name it and as HoldsObjects keys it: `Kind namespace/name`."""
    return f"{undo_data['kind']} {undo_data['namespace']}/{name}"


def _server_scope(server: str) -> str:
    """An API server URL as one spelling: scheme and host lower case, the default port
    written out, no trailing slash (`https://K8s:443/` and `https://k8s` are one server).
    Different names for one server (an IP and a DNS name) stay apart."""
    url = urlsplit(server.strip())
    scheme = url.scheme.lower() or "https"
    try:
        port = url.port or (443 if scheme == "https" else 80)
    except ValueError:  # a bad port: the requests fail and say so; keep the spelling
        return server.strip().rstrip("/").lower()
    return f"{scheme}://{(url.hostname or '').lower()}:{port}{url.path.rstrip('/')}"


def _checked(value: str, what: str) -> str:
    if not _DNS1123.fullmatch(value):
        raise TargetError(f"{what} {value[:100]!r} is not a valid Kubernetes name", False)
    return value
