"""Keys and certificates for one control plane, made with the ``openssl`` command.

A throwaway CA signs the API server's serving certificate (for 127.0.0.1 and localhost);
an RSA key pair signs and verifies service-account tokens. Clients authenticate with
static bearer tokens, so no client certificates are needed.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_DAYS = "30"


class PkiError(RuntimeError):
    """openssl is missing or one of its commands failed."""


@dataclass(frozen=True)
class Pki:
    """Files of one control plane's PKI."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    service_account_public_key: Path


def generate(directory: Path) -> Pki:
    """Write a fresh CA, serving certificate and service-account key pair into ``directory``."""
    if shutil.which("openssl") is None:
        raise PkiError("the `openssl` command is needed to make the test cluster's certificates")
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        service_account_key=directory / "sa.key",
        service_account_public_key=directory / "sa.pub",
    )
    ca_key = directory / "ca.key"
    # A unique CA name per cluster keeps two clusters' certificates apart in error messages.
    ca_name = f"sluice-test-ca-{secrets.token_hex(4)}"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", ca_key, "-out", pki.ca_cert, "-days", _DAYS,
        "-subj", f"/CN={ca_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    csr = directory / "apiserver.csr"
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", pki.serving_key, "-out", csr, "-subj", "/CN=kube-apiserver",
    )  # fmt: skip
    extensions = directory / "apiserver.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", pki.ca_cert, "-CAkey", ca_key,
        "-CAcreateserial", "-out", pki.serving_cert, "-days", _DAYS, "-extfile", extensions,
    )  # fmt: skip
    _openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
        "-out", pki.service_account_key,
    )  # fmt: skip
    _openssl(
        "pkey", "-in", pki.service_account_key, "-pubout", "-out", pki.service_account_public_key
    )
    return pki


def _openssl(*args: str | Path) -> None:
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {proc.stderr.strip()}")
