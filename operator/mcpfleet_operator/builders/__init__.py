"""Pure functions from an MCPServer to the manifests and status it implies.

Nothing here imports kopf or a Kubernetes client (an import-linter contract
checks it), so every builder is tested with plain dictionaries.
"""
