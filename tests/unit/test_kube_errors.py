"""API errors are classified once, at the client boundary, from the API server's Status body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from mcpfleet_operator.kube import KubeError


def _api_error(status: int, body: Mapping[str, Any]) -> ApiException:
    exc = ApiException(status=status, reason="Forbidden")
    exc.body = json.dumps(body).encode()
    return exc


def test_a_terminating_namespace_is_recognised_by_its_cause() -> None:
    # What kube-apiserver 1.37 answers when a child is created in a namespace being deleted.
    body = {
        "kind": "Status",
        "status": "Failure",
        "message": 'services "k8s-ops" is forbidden: unable to create new content in namespace e2e'
        " because it is being terminated",
        "reason": "Forbidden",
        "details": {
            "name": "k8s-ops",
            "kind": "services",
            "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}],
        },
        "code": 403,
    }
    error = KubeError.from_api(_api_error(403, body))
    assert error.namespace_terminating
    assert not error.retryable
    assert "being terminated" in str(error)


def test_an_rbac_denial_is_not_a_terminating_namespace() -> None:
    body = {
        "message": 'deployments.apps is forbidden: User "x" cannot create resource',
        "reason": "Forbidden",
        "details": {},
    }
    error = KubeError.from_api(_api_error(403, body))
    assert not error.namespace_terminating
    assert error.status == 403


def test_a_body_that_is_not_a_status_still_gives_an_error() -> None:
    exc = ApiException(status=502, reason="Bad Gateway")
    exc.body = b"<html>proxy error</html>"
    error = KubeError.from_api(exc)
    assert (error.status, error.reason, error.causes) == (502, "Bad Gateway", ())
    assert error.retryable
