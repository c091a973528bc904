"""Mutual TLS for the MAG-to-MAG context channel: credentials, TLS options, peer identity.

Every MAG of a domain holds a private key and a certificate signed by the
domain's CA, and trusts that CA only. A MAG's identity is its name (the
pmipv6 ``name`` / the key in the peers' ``peers`` maps), carried as a DNS
subjectAltName (and the CN) of its certificate. The server side asks for and
verifies the client's certificate against the CA (TLS 1.2 at least); the
client side verifies the server's certificate and its name against the peer
it meant to reach (service_identity). Which configured peer a verified
certificate belongs to is ``peer_names``' job. docs/peer-tls.md says how to
make the files (peer_pki.py makes them too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import ssl

MINIMUM_TLS = ssl.TLSVersion.TLSv1_2


def certificate_names(certificate: x509.Certificate) -> frozenset[str]:
    """The DNS subjectAltNames and the common name(s) of ``certificate``."""
    names = {attribute.value for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
             if isinstance(attribute.value, str)}
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(names)
    return frozenset(names | set(san.get_values_for_type(x509.DNSName)))


def peer_names(peer_certificate: crypto.X509 | None, peers: frozenset[str]) -> frozenset[str]:
    """The configured peers a verified peer certificate names (empty: no configured peer)."""
    if peer_certificate is None:
        return frozenset()
    return certificate_names(peer_certificate.to_cryptography()) & peers


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """This MAG's key and certificate and the domain CA it trusts."""

    ca: ssl.Certificate
    own: ssl.PrivateCertificate
    names: frozenset[str]

    def server_options(self) -> ssl.CertificateOptions:
        """Require and verify a client certificate issued by the CA."""
        return ssl.CertificateOptions(privateKey=self.own.privateKey.original,
                                      certificate=self.own.original, verify=True,
                                      caCerts=[self.ca.original], requireCertificate=True,
                                      raiseMinimumTo=MINIMUM_TLS)

    def client_options(self, peer: str):
        """Verify the server's certificate (CA and name ``peer``), present our own."""
        return ssl.optionsForClientTLS(peer, trustRoot=self.ca, clientCertificate=self.own,
                                       extraCertificateOptions={"raiseMinimumTo": MINIMUM_TLS})


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror or exc}") from exc


def load_credentials(ca_path: str, cert_path: str, key_path: str) -> PeerCredentials:
    """Read and check the three PEM files; ``ValueError`` says what is wrong with which."""
    ca_pem, cert_pem, key_pem = (_read(ca_path, "tls_ca"), _read(cert_path, "tls_cert"),
                                 _read(key_path, "tls_key"))
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise ValueError(f"tls_ca {ca_path}: not a PEM certificate ({exc})") from exc
    try:
        own_cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ValueError(f"tls_cert {cert_path}: not a PEM certificate ({exc})") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"tls_key {key_path}: not an unencrypted PEM private key ({exc})") from exc
    if _public_der(key.public_key()) != _public_der(own_cert.public_key()):
        raise ValueError(f"tls_key {key_path} does not match tls_cert {cert_path}")
    try:
        own_cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ValueError(f"tls_cert {cert_path} is not issued by the CA in {ca_path}") from exc
    own = ssl.PrivateCertificate.fromCertificateAndKeyPair(
        ssl.Certificate.loadPEM(cert_pem), ssl.KeyPair.load(key_pem, crypto.FILETYPE_PEM))
    return PeerCredentials(ssl.Certificate.loadPEM(ca_pem), own, certificate_names(own_cert))


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
