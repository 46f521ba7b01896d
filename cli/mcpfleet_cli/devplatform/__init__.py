"""`mcpfleet dev`: the whole platform on one machine.

A real control plane (etcd, kube-apiserver, kube-controller-manager), the operator with its least-privilege
ServiceAccount, the three built-in servers as local processes registered as external ``MCPServer`` objects,
the gateway reading the catalog ConfigMap, and Redis, Consul and Prometheus beside them. Every process is a
child of `mcpfleet dev` and dies with it.
"""
