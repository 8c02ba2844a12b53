"""`voicebridge-dev-certs --out certs/`: a development CA and one certificate per service, for mTLS.

Writes ca.pem (the CA certificate; its key is not kept, so nothing else can be signed later) and
<service>.pem / <service>-key.pem for edge, media and agent. Each certificate is valid as server and
as client (media is both), for the names the services reach each other by: the compose service name,
localhost and 127.0.0.1. Point GRPC_TLS_CA/GRPC_TLS_CERT/GRPC_TLS_KEY at them. For production, use
certificates from your own CA (or a service mesh, with GRPC_INSECURE=true).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICES = ("edge", "media", "agent")
VALID_DAYS = 825


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "voicebridge development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


CaPair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def make_ca(common_name: str = "voicebridge development CA") -> CaPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    service: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...] = ()
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for `service`, signed by the CA, for server and client use."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys((service, "localhost", *hosts))]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(service))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def write_dev_certs(
    out: Path, services: tuple[str, ...] = SERVICES, hosts: tuple[str, ...] = (), owner: str | None = None
) -> None:
    """A fresh CA and a certificate per service in `out` (keys readable by their owner only).

    `owner` ("uid:gid") hands the files to the services' user when run as root (compose's volume)."""
    out.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca()
    (out / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for service in services:
        cert, key = make_leaf(service, ca_cert, ca_key, hosts)
        (out / f"{service}.pem").write_bytes(cert)
        key_path = out / f"{service}-key.pem"
        key_path.unlink(missing_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
    if owner:
        uid, _, gid = owner.partition(":")
        for path in out.glob("*.pem"):
            os.chown(path, int(uid), int(gid or uid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicebridge-dev-certs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="directory to write the PEM files to")
    parser.add_argument("--host", action="append", default=[], help="an extra DNS name in every certificate")
    parser.add_argument(
        "--if-missing", action="store_true", help="leave an existing set (ca.pem present) untouched"
    )
    parser.add_argument("--owner", metavar="UID:GID", help="give the files to this user (when run as root)")
    args = parser.parse_args(argv)
    if args.if_missing and (args.out / "ca.pem").is_file():
        print(f"voicebridge-dev-certs: {args.out} already holds a set; kept")
        return 0
    write_dev_certs(args.out, hosts=tuple(args.host), owner=args.owner)
    print(f"voicebridge-dev-certs: wrote ca.pem and {', '.join(SERVICES)} certificates to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
