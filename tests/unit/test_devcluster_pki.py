"""The local control plane's PKI: a chain the API server and clients accept, and private keys kept private."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mcpfleet_cli.devcluster.certs import generate
from mcpfleet_cli.devcluster.cluster import write_kubeconfig


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_leaf_certificates_chain_to_the_ca_with_the_right_identities(tmp_path: Path) -> None:
    pki = generate(tmp_path, datetime.timedelta(days=1))
    ca = _load(pki.ca_cert)
    serving, admin, kcm = _load(pki.serving.cert), _load(pki.admin.cert), _load(pki.controller_manager.cert)
    for leaf in (serving, admin, kcm):
        leaf.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert ExtendedKeyUsageOID.SERVER_AUTH in serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert kcm.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:kube-controller-manager"


def test_private_keys_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    generate(tmp_path, datetime.timedelta(days=1))
    for key in tmp_path.glob("*.key"):
        assert key.stat().st_mode & 0o077 == 0, key.name


def test_a_token_kubeconfig_embeds_the_ca_and_holds_no_client_key(tmp_path: Path) -> None:
    pki = generate(tmp_path, datetime.timedelta(days=1))
    path = write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:6443", pki.ca_cert, user="op", token="t0k3n")
    config = yaml.safe_load(path.read_text())
    assert config["users"] == [{"name": "op", "user": {"token": "t0k3n"}}]
    assert config["clusters"][0]["cluster"]["certificate-authority-data"]
    assert path.stat().st_mode & 0o077 == 0
