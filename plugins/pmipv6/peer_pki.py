"""Makes the key and certificate files of the MAG-to-MAG channel's mutual TLS (docs/peer-tls.md).

    python -m mcproxy_pmip_plugins.pmipv6.peer_pki DIR mag1 mag2 ...

writes ``DIR/ca.pem`` and ``DIR/ca.key`` (made once, reused on later runs),
then ``DIR/NAME.pem`` and ``DIR/NAME.key`` for each MAG name: an ECDSA P-256
key and a certificate signed by the CA whose CN and DNS subjectAltName are
the name. Keys are written mode 0600. For testbeds and small domains; a real
domain may use any CA that issues the same kind of certificate.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY_DAYS = 825


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days)))


def make_ca(common_name: str = "mcproxy-pmip peer CA", days: int = VALIDITY_DAYS) -> tuple[
        ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA key and certificate that may sign MAG certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (_builder(common_name, _name(common_name), key.public_key(), days)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .sign(key, hashes.SHA256()))
    return key, certificate


def issue(ca_key, ca_certificate: x509.Certificate, name: str, days: int = VALIDITY_DAYS) -> tuple[
        ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A MAG's key and certificate: CN and DNS subjectAltName ``name``, for TLS client and server."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (_builder(name, ca_certificate.subject, key.public_key(), days)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    return key, certificate


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write_certificate(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def make_domain(directory: Path, names: list[str], ca_name: str = "mcproxy-pmip peer CA") -> dict[str, dict[str, str]]:
    """The CA (reused when ``directory`` has one) and one key+certificate per name; returns
    each name's pmipv6 TLS settings (``tls_ca``, ``tls_cert``, ``tls_key``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key_pem = directory / "ca.pem", directory / "ca.key"
    if ca_pem.exists() and ca_key_pem.exists():
        ca_certificate = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_pem.read_bytes(), password=None)
    else:
        ca_key, ca_certificate = make_ca(ca_name)
        _write_key(ca_key_pem, ca_key)
        _write_certificate(ca_pem, ca_certificate)
    settings = {}
    for name in names:
        key, certificate = issue(ca_key, ca_certificate, name)
        _write_key(directory / f"{name}.key", key)
        _write_certificate(directory / f"{name}.pem", certificate)
        settings[name] = {"tls_ca": str(ca_pem), "tls_cert": str(directory / f"{name}.pem"),
                          "tls_key": str(directory / f"{name}.key")}
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the CA and MAG certificates of the pmipv6 peer channel.")
    parser.add_argument("directory", type=Path, help="where the PEM files go (ca.pem/ca.key reused if present)")
    parser.add_argument("names", nargs="+", help="MAG names (pmipv6 `name`, the keys of the peers' `peers`)")
    args = parser.parse_args(argv)
    for name, files in make_domain(args.directory, args.names).items():
        print(f"{name}: tls_ca={files['tls_ca']} tls_cert={files['tls_cert']} tls_key={files['tls_key']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
