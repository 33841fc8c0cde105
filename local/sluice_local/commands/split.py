"""``sluice split MODEL.onnx --parts N|auto``: cut a model into sequential parts of balanced
compute and write them with the InferencePipeline manifest that chains them."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from sluice_core.spec import COMPOSITIONS, ISOLATED, SpecError, parse_pipeline

from sluice_local.cli import CommandError
from sluice_local.split.choose import MAX_PARTS
from sluice_local.split.graph import SplitError
from sluice_local.split.manifest import (
    DEFAULT_URI_PREFIX,
    model_uri,
    part_file_name,
    pipeline_manifest,
    pipeline_name,
)
from sluice_local.split.onnxgraph import load_model
from sluice_local.split.run import ATOL, MIB, RTOL, Split, SplitOptions, split_model

AUTO = "auto"


def register(subparsers: Any) -> None:
    """Add ``sluice split``."""
    parser = subparsers.add_parser(
        "split",
        help="cut an ONNX model into sequential parts and write the pipeline that chains them",
        description=(
            "Cut MODEL.onnx into N sequential sub-models whose compute is balanced (measured "
            "with onnxruntime, or estimated from the graph with --estimate) while few bytes "
            "cross each cut, check that the parts in chain answer as the whole model does, "
            "and write them with an InferencePipeline manifest whose stages chain them. A "
            "cut is valid where every tensor the rest of the graph needs from before it has "
            "a batch axis (skip connections are carried along) or can be made again after "
            "it (weights, constants and shape arithmetic are duplicated)."
        ),
        epilog="Exit status: 0 when the parts are written, 2 when the split cannot be made.",
    )
    add = parser.add_argument
    add("model", type=Path, metavar="MODEL.onnx", help="the ONNX model to split")
    add("--parts", type=_parts, required=True, metavar="N|auto",
        help=f"how many parts (1 to {MAX_PARTS}), or auto: the fewest within the limits")
    add("--max-part-ms", type=_positive, metavar="MS",
        help="with --parts auto: the most a part may take for --batch rows (measured)")
    add("--max-part-mib", type=_positive, metavar="MIB",
        help="with --parts auto: the most weights a part may hold, MiB")
    add("--estimate", action="store_true",
        help="balance estimated FLOPs instead of latencies measured piece by piece")
    add("--batch", type=int, default=8, metavar="ROWS",
        help="rows of the sample input the parts are timed and checked with "
             "(default %(default)s)")
    add("--out", type=Path, default=Path("."), metavar="DIR",
        help="where to write the parts and the manifest (default: here)")
    add("--name", help="the pipeline's name, and the files' prefix (default: from MODEL)")
    add("--uri-prefix", default=DEFAULT_URI_PREFIX, metavar="URI",
        help="where the manifest says the parts are (default %(default)s)")
    add("--slo-ms", type=int, default=100, metavar="MS",
        help="the manifest's end-to-end latency SLO (default %(default)s)")
    add("--composition", choices=COMPOSITIONS, default=ISOLATED,
        help="the manifest's composition (default %(default)s)")
    add("--json", action="store_true", help="print the split as JSON")
    parser.set_defaults(run=run)


def _parts(text: str) -> int | None:
    if text == AUTO:
        return None
    try:
        parts = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of parts or auto") from None
    if parts < 1:
        raise argparse.ArgumentTypeError(f"{parts} is not a number of parts")
    if parts > MAX_PARTS:
        raise argparse.ArgumentTypeError(f"at most {MAX_PARTS} parts (a pipeline's stages), "
                                         f"got {parts}")
    return parts


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _options(args: argparse.Namespace) -> SplitOptions:
    limited = args.max_part_ms is not None or args.max_part_mib is not None
    if args.parts is None and not limited:
        raise CommandError("--parts auto needs --max-part-ms or --max-part-mib")
    if args.parts is not None and limited:
        raise CommandError("--max-part-ms and --max-part-mib choose the number of parts: "
                           "give --parts auto")
    if args.estimate and args.max_part_ms is not None:
        raise CommandError("--max-part-ms judges measured latency: drop --estimate")
    if args.batch < 1:
        raise CommandError(f"--batch must be >= 1, got {args.batch}")
    return SplitOptions(args.parts, args.max_part_ms, args.max_part_mib, args.estimate,
                        args.batch)


def _valid(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest``, if sluice_core.spec accepts it."""
    try:
        parse_pipeline(manifest)
    except SpecError as exc:
        raise CommandError(f"the manifest would be invalid: {exc}") from None
    return manifest


def run(args: argparse.Namespace) -> int:
    """Split, check, write the parts and the manifest, and report."""
    options = _options(args)
    name = args.name or pipeline_name(args.model.stem)
    if not name:
        raise CommandError(f"cannot make a pipeline name of {args.model.name!r}: give --name")
    # The name, URIs, SLO and composition are checked before the split's minutes of work.
    first_uri = model_uri(args.uri_prefix, part_file_name(name, 1))
    _valid(pipeline_manifest(name, [(first_uri, None)], args.slo_ms, args.composition))
    try:
        split = split_model(load_model(args.model), args.model.name, options)
    except SplitError as exc:
        raise CommandError(str(exc)) from None
    blobs = [part.model.SerializeToString() for part in split.parts]
    files = [args.out / part_file_name(name, k) for k in range(1, len(blobs) + 1)]
    uris = [model_uri(args.uri_prefix, f.name) for f in files]
    digests = [hashlib.sha256(blob).hexdigest() for blob in blobs]
    manifest = _valid(pipeline_manifest(name, list(zip(uris, digests, strict=True)),
                                        args.slo_ms, args.composition))
    args.out.mkdir(parents=True, exist_ok=True)
    for path, blob in zip(files, blobs, strict=True):
        path.write_bytes(blob)
    manifest_path = args.out / f"{name}.yaml"
    manifest_path.write_text(
        f"# Written by `sluice split {args.model.name}`: {len(files)} parts of "
        f"{args.model.name} chained in order (docs/split.md).\n"
        + yaml.safe_dump(manifest, sort_keys=False))
    report = to_json(split, args.model, files, uris, manifest_path)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def _shape(split: Split, name: str) -> list[int]:
    """OIP style: -1 for the batch axis and free axes."""
    value = split.graph.values[name]
    return [d if fixed and not (i == 0 and value.batch) else -1
            for i, (d, fixed) in enumerate(zip(value.shape, value.static, strict=True))]


def to_json(split: Split, model: Path, files: list[Path], uris: list[str],
            manifest: Path) -> dict[str, Any]:
    """The split as machines read it."""
    graph = split.graph
    return {
        "model": str(model),
        "nodes": len(graph.nodes),
        "weights_bytes": sum(graph.initializers.values()),
        "valid_cuts": len(split.valid_cuts),
        "candidate_cuts": split.candidate_cuts,
        "balanced_by": "estimated FLOPs" if split.estimated else "measured latency",
        "rows": split.rows,
        "parts": [
            {"part": k, "file": str(path), "uri": uri, "start": part.plan.start,
             "end": part.plan.end, "nodes": len(part.plan.nodes),
             "inputs": list(part.plan.inputs), "outputs": list(part.plan.outputs),
             "weights_bytes": part.plan.weights_bytes,
             "estimated_flops_per_row": part.flops_per_row, "latency_ms": part.latency_ms}
            for k, (part, path, uri) in enumerate(zip(split.parts, files, uris, strict=True),
                                                  start=1)],
        "cuts": [
            {"cut": k, "position": cut.position, "after": graph.nodes[cut.position - 1].label,
             "bytes_per_row": cut.bytes_per_row,
             "tensors": [{"name": t, "dtype": graph.values[t].dtype, "shape": _shape(split, t),
                          "bytes_per_row": graph.bytes_per_row(t)} for t in cut.tensors]}
            for k, cut in enumerate(split.cuts, start=1)],
        "whole_latency_ms": split.whole_latency_ms,
        "parts_latency_ms": sum(p.latency_ms for p in split.parts),
        "verification": {"rows": split.rows, "rtol": RTOL, "atol": ATOL,
                         "max_abs_diff": split.max_abs_diff,
                         "max_abs_diff_unoptimised": split.max_abs_diff_unoptimised},
        "manifest": str(manifest),
    }


def _tensor(tensor: dict[str, Any]) -> str:
    dims = ["N" if i == 0 else ("?" if d < 0 else str(d)) for i, d in enumerate(tensor["shape"])]
    return f"{tensor['name']} {tensor['dtype']}[{','.join(dims)}]"


def render(report: dict[str, Any]) -> str:
    """The split as a person reads it: parts, cuts, latencies, the check, the files."""
    parts, cuts = report["parts"], report["cuts"]
    lines = [
        f"{Path(report['model']).name}: {report['nodes']} nodes, "
        f"{report['weights_bytes'] / MIB:.2f} MiB of weights, {report['valid_cuts']} valid cut "
        f"points ({report['candidate_cuts']} costed); balanced by {report['balanced_by']}, "
        f"timed at {report['rows']} rows on one thread",
        f"{'part':>4} {'nodes':>6} {'weights MiB':>12} {'MFLOP/row':>10} {'latency ms':>11}  file",
    ]
    lines += [f"{p['part']:>4} {p['nodes']:>6} {p['weights_bytes'] / MIB:>12.2f} "
              f"{p['estimated_flops_per_row'] / 1e6:>10.1f} {p['latency_ms']:>11.2f}  {p['file']}"
              for p in parts]
    if cuts:
        width = max(len(c["after"]) for c in cuts)
        lines.append(f"{'cut':>4} {'after node':<{width}} {'bytes/row':>10}  crossing tensors")
        lines += [f"{c['cut']:>4} {c['after']:<{width}} {c['bytes_per_row']:>10,}  "
                  + ", ".join(_tensor(t) for t in c["tensors"]) for c in cuts]
    whole_ms, parts_ms = report["whole_latency_ms"], report["parts_latency_ms"]
    check = report["verification"]
    diffs = ", ".join(f"{name} {diff:.2g}" for name, diff in check["max_abs_diff"].items())
    exact = all(d == 0 for d in check["max_abs_diff_unoptimised"].values())
    lines += [
        f"whole model {whole_ms:.2f} ms, parts in sequence {parts_ms:.2f} ms "
        f"({parts_ms / whole_ms:.2f}x), at {report['rows']} rows",
        f"the parts in chain answer as the model within rtol {check['rtol']:g}, atol "
        f"{check['atol']:g} (max abs diff: {diffs}; "
        f"{'bit-identical' if exact else 'not bit-identical'} without graph optimisation)",
        f"manifest: {report['manifest']}",
    ]
    return "\n".join(lines)
