"""A throw-away certificate authority and server certificates, made with ``cryptography``."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path  # the CA certificate, PEM


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
             valid: tuple[datetime.timedelta, datetime.timedelta] = (-HOUR, DAY)
             ) -> x509.CertificateBuilder:
    """``valid``: (not before, not after), relative to now."""
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + valid[0]).not_valid_after(now + valid[1]))


def _write(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, directory: Path,
           stem: str) -> tuple[Path, Path]:
    certificate_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return certificate_path, key_path


def make_client_certificate(authority: Authority, directory: Path,
                            common_name: str) -> tuple[Path, Path]:
    """(certificate, key) for a client; Mosquitto can take ``common_name`` as its user name."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (_builder(_name(common_name), authority.certificate.subject, key)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .sign(authority.key, hashes.SHA256()))
    return _write(certificate, key, directory, common_name.replace("/", "_"))


def make_authority(directory: Path, name: str = "Test CA") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (_builder(_name(name), _name(name), key)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                                False, False), True)
                   .sign(key, hashes.SHA256()))
    path = directory / f"{name.replace(' ', '-')}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Authority(certificate, key, path)


def make_server_certificate(authority: Authority, directory: Path, names: list[str],
                            valid: tuple[datetime.timedelta, datetime.timedelta] = (-HOUR, DAY)
                            ) -> tuple[Path, Path]:
    """(certificate, key) PEM files for ``names`` (host names or IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    certificate = (_builder(_name(names[0]), authority.certificate.subject, key, valid)
                   .add_extension(x509.SubjectAlternativeName(alternatives), False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .sign(authority.key, hashes.SHA256()))
    return _write(certificate, key, directory, "server")
