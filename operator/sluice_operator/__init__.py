"""Sluice operator: reconciles InferencePipelines into Knative Services.

Pure modules compute desired state (``pipeline``, ``render``, ``status``); ``kube`` and
``reconcile`` do the I/O; ``handlers`` registers the Kopf handlers; ``python -m
sluice_operator`` runs it.
"""
