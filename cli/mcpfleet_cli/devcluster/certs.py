"""The local control plane's PKI: one CA, the API server's serving cert, client certs, the SA key."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# In-cluster names a client may use for the API server, and the first address of the service range.
API_SERVER_DNS_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/24"
API_SERVICE_IP = "10.96.0.1"


@dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    serving: ClientCert
    admin: ClientCert
    controller_manager: ClientCert
    service_account_key: Path
    service_account_pub: Path


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    ca_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    valid_for: datetime.timedelta,
    *,
    usage: x509.ObjectIdentifier | None = None,
    sans: list[x509.GeneralName] | None = None,
    is_ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not is_ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def generate(directory: Path, valid_for: datetime.timedelta) -> Pki:
    """Write a fresh CA and everything the control plane needs under `directory` (keys mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("mcpfleet-dev-ca")
    ca = _issue(ca_name, ca_key.public_key(), ca_key, ca_name, valid_for, is_ca=True)
    _write_cert(directory / "ca.crt", ca)
    _write_key(directory / "ca.key", ca_key)

    def leaf(
        stem: str, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None
    ) -> ClientCert:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(subject, key.public_key(), ca_key, ca_name, valid_for, usage=usage, sans=sans)
        _write_cert(directory / f"{stem}.crt", cert)
        _write_key(directory / f"{stem}.key", key)
        return ClientCert(directory / f"{stem}.crt", directory / f"{stem}.key")

    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in API_SERVER_DNS_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", API_SERVICE_IP)]
    serving = leaf("apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    # system:masters is the static admin credential; the controller manager gets its built-in identity,
    # which the API server's bootstrap RBAC policy already binds.
    admin = leaf("admin", _name("mcpfleet-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, None)
    controller_manager = leaf(
        "kube-controller-manager", _name("system:kube-controller-manager"), ExtendedKeyUsageOID.CLIENT_AUTH, None
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "service-account.key", sa_key)
    (directory / "service-account.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Pki(
        ca_cert=directory / "ca.crt",
        serving=serving,
        admin=admin,
        controller_manager=controller_manager,
        service_account_key=directory / "service-account.key",
        service_account_pub=directory / "service-account.pub",
    )
