"""The monitoring server: Prometheus and Alertmanager tools on the common server base."""
