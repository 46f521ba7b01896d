"""Manifest generation tools (SAFE, read-only): structured parameters or a description in words -> an apps/v1
Deployment, validated by a server-side dry-run create when the cluster answers."""

from typing import Annotated, Any

from mcp.server.mcpserver import Resolve, Sample
from mcp.types import CreateMessageResult, SamplingMessage, TextContent
from pydantic import BaseModel, Field, ValidationError

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.toolkit import BackendUnavailable, InvalidArgument, ToolFailure, Toolset
from mcpfleet_servers.k8s_ops.client import DEPLOYMENT, Target
from mcpfleet_servers.k8s_ops.common import ContextArg, Deps, NamespaceArg
from mcpfleet_servers.k8s_ops.manifests import (
    DNS_LABEL,
    ENV_NAME,
    QUANTITY,
    DeploymentParams,
    SecretEnv,
    build_deployment,
    check_deployment,
    parse_manifests,
    to_yaml,
)
from mcpfleet_servers.k8s_ops.redact import is_credential_key, redact_object

SYSTEM_PROMPT = (
    "You write Kubernetes manifests. Answer with exactly one YAML document: an apps/v1 Deployment with "
    "metadata.name, spec.selector.matchLabels equal to the template labels, and at least one container with "
    "name and image. Never put passwords or tokens in env values: use valueFrom.secretKeyRef. No prose."
)


class GeneratedManifest(BaseModel):
    yaml: str = Field(description="The Deployment as YAML, ready for apply_manifest.")
    manifest: dict[str, Any] = Field(description="The same Deployment as an object.")
    validated: bool = Field(description="True when the API server accepted a dry-run create of it.")
    validation: str = Field(description="How it was validated, or why it could not be.")
    problems: list[str] = Field(default_factory=list, description="What is wrong with the manifest, if anything.")


def model_text(answer: CreateMessageResult) -> str:
    content = answer.content
    return content.text if isinstance(content, TextContent) else ""


def register_generate(toolset: Toolset, deps: Deps) -> None:
    backend, settings = deps.backend, deps.settings
    safe = toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True)

    async def _validate(manifest: dict[str, Any], validate: bool, context: str | None) -> GeneratedManifest:
        problems = check_deployment(manifest)
        ns = str(manifest["metadata"].get("namespace") or settings.namespace)
        shown = redact_object(manifest, settings.denied_kinds, "Deployment")
        if problems:
            return GeneratedManifest(
                yaml=to_yaml(shown),
                manifest=shown,
                validated=False,
                validation="structural checks failed",
                problems=problems,
            )
        if not validate:
            return GeneratedManifest(yaml=to_yaml(shown), manifest=shown, validated=False, validation="not requested")
        try:
            await backend.request(
                "POST",
                DEPLOYMENT.path(ns),
                Target("create", DEPLOYMENT, ns, str(manifest["metadata"]["name"])),
                context=context,
                query=[("dryRun", "All"), ("fieldManager", settings.field_manager)],
                body=manifest,
            )
        except BackendUnavailable as exc:
            return GeneratedManifest(
                yaml=to_yaml(shown),
                manifest=shown,
                validated=False,
                validation=f"not validated: {exc}; structural checks passed",
            )
        except InvalidArgument as exc:
            return GeneratedManifest(
                yaml=to_yaml(shown),
                manifest=shown,
                validated=False,
                validation="the API server rejected it",
                problems=[str(exc)],
            )
        except ToolFailure as exc:
            if "conflict" in str(exc).lower() or "already exists" in str(exc).lower():
                return GeneratedManifest(
                    yaml=to_yaml(shown),
                    manifest=shown,
                    validated=True,
                    validation="accepted by the API server's validation; a deployment of this name already exists",
                )
            return GeneratedManifest(
                yaml=to_yaml(shown),
                manifest=shown,
                validated=False,
                validation=f"not validated: {exc}; structural checks passed",
            )
        return GeneratedManifest(
            yaml=to_yaml(shown), manifest=shown, validated=True, validation="server-side dry-run create succeeded"
        )

    @safe
    async def generate_deployment_yaml(
        name: Annotated[str, Field(max_length=63, pattern=DNS_LABEL, description="Deployment name (DNS label).")],
        image: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^\S+$", description="Container image.")],
        namespace: NamespaceArg = None,
        replicas: Annotated[int, Field(ge=0, le=1000, description="Desired replicas.")] = 1,
        container_port: Annotated[
            int | None, Field(ge=1, le=65535, description="Port the container listens on.")
        ] = None,
        labels: Annotated[dict[str, str] | None, Field(description="Extra labels.")] = None,
        env: Annotated[
            dict[Annotated[str, Field(pattern=ENV_NAME)], str] | None,
            Field(description="Literal environment variables (no credentials: use secret_env)."),
        ] = None,
        secret_env: Annotated[
            list[SecretEnv] | None, Field(max_length=100, description="Environment variables from Secret keys.")
        ] = None,
        command: Annotated[list[str] | None, Field(max_length=64, description="Container command.")] = None,
        args: Annotated[list[str] | None, Field(max_length=256, description="Container arguments.")] = None,
        cpu_request: Annotated[str | None, Field(pattern=QUANTITY, description="CPU request, e.g. 100m.")] = None,
        memory_request: Annotated[
            str | None, Field(pattern=QUANTITY, description="Memory request, e.g. 128Mi.")
        ] = None,
        cpu_limit: Annotated[str | None, Field(pattern=QUANTITY, description="CPU limit.")] = None,
        memory_limit: Annotated[str | None, Field(pattern=QUANTITY, description="Memory limit.")] = None,
        health_path: Annotated[
            str | None, Field(pattern=r"^/\S*$", description="HTTP path for readiness/liveness probes.")
        ] = None,
        validate: Annotated[bool, Field(description="Validate with a server-side dry-run create.")] = True,
        context: ContextArg = None,
    ) -> GeneratedManifest:
        """Build an apps/v1 Deployment manifest from parameters, validated by a server-side dry-run create
        when the cluster is reachable (reported as validated or not). Changes nothing."""
        ns = deps.readable(namespace)
        for key in env or {}:
            if is_credential_key(key):
                raise InvalidArgument("env", f"{key} looks like a credential; pass it through secret_env instead")
        try:
            params = DeploymentParams(
                name=name,
                image=image,
                namespace=ns,
                replicas=replicas,
                container_port=container_port,
                labels=labels or {},
                env=env or {},
                secret_env=secret_env or [],
                command=command,
                args=args,
                cpu_request=cpu_request,
                memory_request=memory_request,
                cpu_limit=cpu_limit,
                memory_limit=memory_limit,
                health_path=health_path,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidArgument(".".join(str(p) for p in first["loc"]) or "params", first["msg"]) from None
        return await _validate(build_deployment(params), validate, context)

    def ask_model(description: str) -> Sample:
        prompt = f"Write the Deployment for this request:\n{description}"
        return Sample(
            [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=2000,
            system_prompt=SYSTEM_PROMPT,
            temperature=0.0,
        )

    @safe
    async def generate_deployment_from_description(
        description: Annotated[
            str, Field(min_length=3, max_length=4000, description="What to deploy, in words (image, ports, size...).")
        ],
        model_answer: Annotated[CreateMessageResult, Resolve(ask_model)],
        namespace: NamespaceArg = None,
        validate: Annotated[bool, Field(description="Validate with a server-side dry-run create.")] = True,
        context: ContextArg = None,
    ) -> GeneratedManifest:
        """Turn a description in words into an apps/v1 Deployment using the client's own model (MCP sampling),
        then check and validate it like generate_deployment_yaml. Needs a client that supports sampling."""
        ns = deps.readable(namespace)
        text = model_text(model_answer)
        try:
            docs = parse_manifests(text, field="description")
        except InvalidArgument as exc:
            raise ToolFailure(
                f"the client's model did not answer with a manifest ({exc.message}); rephrase the description"
            ) from None
        manifest = next((d for d in docs if d.get("kind") == "Deployment"), None)
        if manifest is None:
            raise ToolFailure("the client's model answered without a Deployment; rephrase the description")
        manifest["metadata"]["namespace"] = ns
        return await _validate(manifest, validate, context)
