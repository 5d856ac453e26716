"""How the Kubernetes target reaches the API server: in-cluster or kubeconfig.

Order: `api_server` from the config (with `token_file`, `ca_file`); else in-cluster
(KUBERNETES_SERVICE_HOST/PORT, the service-account token and ca.crt, token re-read per
request because kubelet rotates it); else a kubeconfig (`kubeconfig`, $KUBECONFIG,
~/.kube/config) read with PyYAML: the current context's cluster `server`,
`certificate-authority(-data)`, `insecure-skip-tls-verify`, and the user's `token`,
`tokenFile` or `client-certificate(-data)`/`client-key(-data)`.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aispend.actuators.settings import KubernetesTargetSettings
from aispend.parsing import load_yaml_1_1
from aispend.secrets import SecretError, require_secret

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeConfigError(Exception):
    """No usable way to reach the API server; the message says what to set."""


@dataclass
class KubeAuth:
    server: str
    ssl: ssl.SSLContext | bool | None = None
    token: str | None = None
    token_file: str | None = None

    def headers(self) -> dict[str, str]:
        token = self.token
        if self.token_file:  # read per request: the kubelet rotates it
            try:
                token = require_secret(self.token_file, None, "kubernetes token")
            except SecretError as exc:
                raise KubeConfigError(str(exc)) from None
        return {"Authorization": f"Bearer {token}"} if token else {}


def load_auth(settings: KubernetesTargetSettings) -> KubeAuth:
    if settings.api_server:
        return KubeAuth(
            server=settings.api_server,
            ssl=_context(settings.ca_file) if settings.ca_file else None,
            token_file=settings.token_file,
        )
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if host and not settings.kubeconfig:
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        return KubeAuth(
            server=f"https://{host}:{port}",
            ssl=_context(settings.ca_file or str(SA_DIR / "ca.crt")),
            token_file=settings.token_file or str(SA_DIR / "token"),
        )
    path = settings.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return from_kubeconfig(Path(path or Path.home() / ".kube" / "config"))


def from_kubeconfig(path: Path) -> KubeAuth:
    try:
        doc = load_yaml_1_1(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(
            f"no in-cluster service account and cannot read kubeconfig {path}: {exc}"
        ) from exc
    if not isinstance(doc, dict):
        raise KubeConfigError(f"kubeconfig {path}: not a mapping")
    try:
        return _from_document(doc, path)
    except KubeConfigError:
        raise
    except binascii.Error as exc:
        raise KubeConfigError(f"kubeconfig {path}: a *-data entry is not base64: {exc}") from exc
    # Bad PEM, a key that does not match its certificate, a wrong-typed entry.
    except (ValueError, TypeError, AttributeError, OSError) as exc:
        raise KubeConfigError(f"kubeconfig {path}: {type(exc).__name__}: {exc}") from exc


def _from_document(doc: dict[str, Any], path: Path) -> KubeAuth:
    ctx_name = doc.get("current-context")
    context = _named(doc, "contexts", ctx_name, path).get("context") or {}
    cluster = _named(doc, "clusters", context.get("cluster"), path).get("cluster") or {}
    user = _named(doc, "users", context.get("user"), path).get("user") or {}
    server = cluster.get("server")
    if not server:
        raise KubeConfigError(f"kubeconfig {path}: cluster has no server")
    base = path.parent

    ctx: ssl.SSLContext | bool | None = None
    if cluster.get("insecure-skip-tls-verify"):
        ctx = False
    elif cluster.get("certificate-authority-data"):
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"], validate=True).decode()
        )
    elif cluster.get("certificate-authority"):
        ctx = _context(str(base / cluster["certificate-authority"]))
    temps: list[str] = []
    try:
        cert = _file_or_data(user, "client-certificate", base, temps)
        key = _file_or_data(user, "client-key", base, temps)
        if cert and key:
            if not isinstance(ctx, ssl.SSLContext):
                verify = ctx is not False
                ctx = ssl.create_default_context()
                if not verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
            ctx.load_cert_chain(cert, key)
    finally:
        for name in temps:  # the key is in memory now; leave no copy on disk
            os.unlink(name)
    token_file = user.get("tokenFile")
    return KubeAuth(
        server=str(server),
        ssl=ctx,
        token=user.get("token"),
        token_file=str(base / token_file) if token_file else None,
    )


def _named(doc: dict[str, Any], section: str, name: Any, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise KubeConfigError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")


def _file_or_data(user: dict[str, Any], key: str, base: Path, temps: list[str]) -> str | None:
    if user.get(key):
        return str(base / user[key])
    data = user.get(f"{key}-data")
    if not data:
        return None
    # ssl.load_cert_chain reads files only: a 0600 temp file, unlinked once loaded.
    fd, name = tempfile.mkstemp(prefix="aispend-kube-", suffix=".pem")
    temps.append(name)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data, validate=True))
    return name


def _context(ca_file: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except OSError as exc:
        raise KubeConfigError(f"cannot read CA file {ca_file}: {exc}") from exc
