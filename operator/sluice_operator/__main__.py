"""``python -m sluice_operator``: run the operator (standalone, one replica)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import kopf

from sluice_operator.handlers import REGISTRY
from sluice_operator.settings import PREFIX, OperatorSettings, SettingsError, load_settings


def _describe_settings() -> str:
    lines = ["settings (environment variables):"]
    for field in dataclasses.fields(OperatorSettings):
        lines.append(f"  {PREFIX}{field.name.upper():<28} default: {field.default!r}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run Kopf with the handlers until SIGTERM/SIGINT; 2 when the settings are invalid."""
    argparse.ArgumentParser(
        prog="sluice-operator",
        description="Reconcile InferencePipelines into Knative Services (see docs/operator.md).",
        epilog=_describe_settings(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"sluice-operator: {exc}", file=sys.stderr)
        return 2
    kopf.configure(log_format=kopf.LogFormat.PLAIN)
    logging.getLogger().setLevel(settings.log_level)
    # Standalone: peering needs Kopf's peering CRDs and buys nothing with one replica
    # (the chart runs one, with the Recreate strategy). See docs/operator.md.
    kopf.run(
        registry=REGISTRY,
        memo=kopf.Memo(operator=settings),
        standalone=True,
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        liveness_endpoint=settings.liveness_endpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
