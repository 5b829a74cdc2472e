"""The engine functions the sandbox may run, by name. Each takes a JSON payload and a progress callback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

ProgressCallback = Callable[[float, str], None]


def _model_path(payload: dict[str, Any], progress: ProgressCallback) -> Path:
    """The ONNX file to work on: the source itself, or model.onnx unpacked from a .zip."""
    from workers.engine.archive import extract_archive

    source = Path(payload["source"])
    if payload["format"] != "onnx-zip":
        return source
    progress(0.02, "unpacking archive")
    return extract_archive(source, Path(payload["workdir"]) / "unpacked")


def import_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Convert a framework file to ONNX with its importer and check parity.

    payload: {"source": path, "format": importer format, "out_dir": path, "inputs": [..]}
    """
    from workers.engine.importers.base import ImportOptions
    from workers.engine.importers.registry import get_importer, require_available
    from workers.engine.signature import parse_input_declarations, parse_input_specs

    importer = get_importer(payload["format"])
    require_available(importer)
    options = ImportOptions(
        inputs=parse_input_specs(payload.get("inputs") or []),
        declarations=parse_input_declarations(payload.get("declarations")),
    )
    out_dir = Path(payload["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    progress(0.05, f"importing with {importer.framework}")
    return importer.convert(Path(payload["source"]), out_dir, options, progress).to_dict()


def inspect_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Inspect the model. payload: {"source": path, "format": "onnx" | "onnx-zip", "workdir": path,
    "declarations": the version's input declarations (optional), "output_declarations": what
    its outputs are (optional)}"""
    from workers.engine.inspection import inspect_model
    from workers.engine.outputs import parse_output_declarations
    from workers.engine.signature import parse_input_declarations

    return inspect_model(
        _model_path(payload, progress),
        progress=progress,
        declarations=parse_input_declarations(payload.get("declarations")),
        output_declarations=parse_output_declarations(payload.get("output_declarations")),
    ).to_dict()


def validate_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """One backend's op-support report. payload: source/format/workdir plus {"backend": name,
    "report_only": true for a profile's reference column (no rewrites are searched)}.

    A backend Slipway has no module for is judged from its published operator list if one
    ships, else reported as not available on this worker.
    """
    from workers.engine.backends.base import SupportReport
    from workers.engine.backends.published import load_published_list, report_from_published_list
    from workers.engine.backends.registry import get_backend

    name = payload["backend"]
    model_path = _model_path(payload, progress)
    progress(0.1, f"asking {name}")
    try:
        backend = get_backend(name)
    except KeyError:
        oplist = load_published_list(name)
        if oplist is not None:
            return report_from_published_list(name, model_path, oplist).to_dict()
        return SupportReport(
            backend=name,
            runtime_version=None,
            installed=False,
            method="runtime",
            verdict="not_installed",
            notes=(f"Slipway has no {name} backend on this worker and no published operator list for it.",),
        ).to_dict()
    report = backend.check_support(model_path)
    result = report.to_dict()
    if payload.get("report_only"):
        # A reference column: nothing is built for it, so no rewrites are searched for it either.
        return result
    if report.installed and report.verdict in ("partial", "none"):
        # Op-support remediation: the rewrites that keep the model's function and let this
        # backend take it; optimize builds the backend's variants from the rewritten model.
        from workers.engine.remediation import find

        progress(0.5, f"trying rewrites {name} would take")
        scratch = Path(payload["workdir"]) / f"rewrites-{name}"
        scratch.mkdir(parents=True, exist_ok=True)
        remedy = find(model_path, backend, report, scratch, progress=lambda message: progress(0.6, message))
        if remedy is not None:
            result["remediation"] = {**remedy.to_dict(), "summary": remedy.summary()}
    return result


def optimize_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Build one backend's variants for a profile.

    payload: source/format/workdir plus {"backend", "profile": HardwareProfile fields,
    "calibration": path or null, "calibration_method", "per_channel", "output_semantics", "out_dir"}.
    """
    from workers.engine.backends.base import Calibration, HardwareProfile
    from workers.engine.backends.registry import get_backend

    model_path = _model_path(payload, progress)
    try:
        backend = get_backend(payload["backend"])
    except KeyError:
        return {"variants": [], "skipped": f"Slipway has no {payload['backend']} backend."}
    if not backend.available():
        return {"variants": [], "skipped": f"{backend.name} is not installed on this worker."}
    fields = payload["profile"]
    profile = HardwareProfile(
        name=fields["name"],
        device_kind=fields["device_kind"],
        backends=tuple(fields["backends"]),
        precisions=tuple(fields["precisions"]),
        queue=fields["queue"],
        options=dict(fields.get("options", {})),
    )
    calibration = None
    evidence_note = ""
    if payload.get("calibration"):
        evidence, description, evidence_note = _search_evidence(model_path, payload)
        calibration = Calibration(
            path=Path(payload["calibration"]),
            method=payload.get("calibration_method", "minmax"),
            per_channel=None if payload.get("per_channel") is None else bool(payload["per_channel"]),
            output_semantics=dict(payload.get("output_semantics") or {}),
            evidence=evidence,
            evidence_description=description,
        )
    out_dir = Path(payload["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    rewrites = [str(name) for name in payload.get("rewrites") or []]
    notes: list[str] = [evidence_note] if evidence_note else []
    steps: list[dict[str, str]] = []
    if rewrites:
        # validate found that this backend takes the model only after these rewrites.
        from workers.engine.remediation import RewriteFailed, apply

        progress(0.05, f"rewriting the model for {backend.name}: {' + '.join(rewrites)}")
        try:
            model_path, applied = apply(
                model_path,
                rewrites,
                payload.get("refused") or [],
                out_dir.parent / f"rewritten-{backend.name}" / "model.onnx",
            )
            steps = [{"rewrite": step.rewrite, "detail": step.detail} for step in applied]
            notes.append(
                f"Built from the model after rewrite {' + '.join(rewrites)} "
                f"({'; '.join(step['detail'] for step in steps)}), which {backend.name} takes whole; "
                "parity judges each variant against the original model."
            )
        except RewriteFailed as exc:
            rewrites = []
            notes.append(f"The rewrite validate found no longer applies ({exc}); built from the model as uploaded.")
    progress(0.1, f"building {backend.name} variants")
    backend.search_progress = lambda fraction, message: progress(0.1 + 0.85 * fraction, message)
    variants = backend.build_variants(model_path, profile, calibration, out_dir)
    if rewrites:
        for variant in variants:
            variant.options["rewrites"] = rewrites
            variant.options["rewrite_steps"] = steps
    # What was not built, and why (no calibration data, a conversion that failed...): the
    # report says so rather than showing fewer variants without a word.
    return {
        "variants": [variant.to_dict() for variant in variants],
        "notes": [*notes, *variants.notes],
    }


def _search_evidence(model_path: Path, payload: dict[str, Any]) -> tuple[tuple[dict[str, Any], ...], str, str]:
    """The inputs the parity step will judge on (the version's validation set, or generated as
    parity generates them), for the quantization searches to judge their candidates on too; and
    a note when they can't be had (the searches then judge on the calibration samples alone)."""
    from workers.engine.errors import ModelError
    from workers.engine.parity import evidence_inputs
    from workers.engine.signature import parse_input_declarations

    validation = Path(payload["validation"]) if payload.get("validation") else None
    try:
        evidence = evidence_inputs(
            model_path, validation, samples=8, declarations=parse_input_declarations(payload.get("declarations"))
        )
    except ModelError as exc:
        why = f"The quantization searches judged their candidates on the calibration samples only: {exc.message}"
        return (), "", why
    return tuple(evidence.feeds), evidence.description, ""


def parity_reference_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Run the original model in onnxruntime on the parity inputs and save inputs and outputs.

    payload: {"model": path, "validation": path or null, "samples": n, "store": path (.npz),
    "declarations": the version's input declarations (optional)}. Returns what the inputs were
    (`parity.EvidenceInputs.summary`: samples, source, description, assumptions).
    """
    import numpy as np

    from workers.engine.backends.registry import get_backend
    from workers.engine.errors import ModelError, runtime_cause
    from workers.engine.input_generation import values_hint
    from workers.engine.parity import evidence_inputs, run_session
    from workers.engine.signature import parse_input_declarations

    validation = Path(payload["validation"]) if payload.get("validation") else None
    evidence = evidence_inputs(
        Path(payload["model"]),
        validation,
        samples=int(payload.get("samples", 8)),
        declarations=parse_input_declarations(payload.get("declarations")),
    )
    inputs = evidence.feeds
    progress(0.3, "running the reference")
    # The reference is the uploaded model itself: when onnxruntime can't load or run it (an
    # operator it lacks, an index out of range, a tensor too large to allocate), that is a
    # fact about the model the user must read, not an engine crash.
    try:
        session = get_backend("onnxruntime").load(Path(payload["model"]))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(
            "reference_failed",
            f"The parity reference runs the model in onnxruntime, which could not load it: "
            f"{runtime_cause(exc).rstrip('. ')}. Replace the operators it lacks, or export the model again.",
        ) from None
    try:
        outputs = run_session(session, inputs)
    except Exception as exc:  # onnxruntime raises its own exception types
        # On generated inputs, name the scalars and the values they were given: a rate or a flag
        # whose valid values the graph doesn't reveal is the usual cause, and its declaration the fix.
        hint = values_hint(inputs) if evidence.source == "generated inputs" else ""
        raise ModelError(
            "reference_failed",
            f"The model failed in onnxruntime on the parity inputs ({evidence.description}): "
            f"{runtime_cause(exc).rstrip('. ')}.{hint} Declare what its inputs take (input_declarations: a "
            "scalar's values, a dim's size and step), or upload validation data (.npz) with valid inputs.",
        ) from None
    finally:
        session.close()
    arrays = {f"in/{i}/{name}": value for i, feed in enumerate(inputs) for name, value in feed.items()}
    arrays.update({f"out/{i}/{name}": value for i, run in enumerate(outputs) for name, value in run.items()})
    np.savez(payload["store"], **arrays)
    return evidence.summary()


def _load_runs(path: Path, prefix: str) -> list[dict[str, Any]]:
    import numpy as np

    runs: dict[int, dict[str, Any]] = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            head, index, name = key.split("/", 2)
            if head == prefix:
                runs.setdefault(int(index), {})[name] = data[key]
    return [runs[i] for i in sorted(runs)]


def parity_variant_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Run one variant on the saved inputs and compare with the saved reference outputs.

    payload: {"backend", "variant": path, "store": path, "tolerance": {...}, "semantics": what each
    output is, by name (`OutputSemantics.to_dict`, optional)}
    """
    from workers.engine.backends.registry import get_backend
    from workers.engine.outputs import semantics_map
    from workers.engine.parity import Tolerance, compare_variant, run_session

    store = Path(payload["store"])
    inputs, reference = _load_runs(store, "in"), _load_runs(store, "out")
    tolerance = Tolerance(**payload["tolerance"])
    progress(0.2, f"running the variant with {payload['backend']}")
    session = get_backend(payload["backend"]).load(Path(payload["variant"]))
    simulated = bool(getattr(session, "simulated", False))
    try:
        outputs = run_session(session, inputs)
    finally:
        session.close()
    semantics = semantics_map(payload.get("semantics"))
    result = compare_variant(reference, outputs, tolerance, semantics).to_dict()
    if simulated:
        # Say where the variant's outputs came from: a simulator of the accelerator, not the accelerator.
        result["notes"].insert(
            0,
            f"The variant's outputs come from {payload['backend']}'s simulator on this worker's CPU, which computes "
            "the accelerator's arithmetic (its quantization and float16); a board's runtime may differ in rounding.",
        )
    return result


def trial_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """The playground's original run: the user's file as the model's feeds, run in onnxruntime.

    payload: {"model": path, "input": path (the user's file), "input_plan": the inspection's
    `InputPlan.to_dict()` (or null: planned from the graph), "declarations", "semantics": what
    each output is (optional), "preprocessing": the user's changes to the image preprocessing
    (optional), "store": path (.npz receiving the feeds and outputs for `trial_variant`)}.
    Returns {"input": what was read and how, "outputs": bounded summaries}.
    """
    import numpy as np

    from workers.engine import playground
    from workers.engine.backends.registry import get_backend
    from workers.engine.errors import ModelError, runtime_cause
    from workers.engine.inputs import InputPlan
    from workers.engine.outputs import semantics_map

    model = Path(payload["model"])
    if payload.get("input_plan"):
        plan = InputPlan.from_dict(payload["input_plan"])
    else:
        import onnx

        from workers.engine.input_planning import plan_inputs
        from workers.engine.inspection import graph_input_specs
        from workers.engine.signature import parse_input_declarations

        graph = onnx.load(str(model), load_external_data=False)
        specs = graph_input_specs(graph.graph, numpy_dtypes_only=True)
        plan = plan_inputs(graph, specs, parse_input_declarations(payload.get("declarations")))
    progress(0.1, "reading the input")
    feeds = playground.read_feeds(Path(payload["input"]), plan, payload.get("preprocessing") or None)
    progress(0.3, "running the original in onnxruntime")
    try:
        session = get_backend("onnxruntime").load(model)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(
            "reference_failed", f"onnxruntime could not load the model: {runtime_cause(exc).rstrip('. ')}."
        ) from None
    try:
        outputs = session.run(dict(feeds.feeds))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(
            "trial_failed",
            f"The model failed in onnxruntime on this input ({'; '.join(feeds.applied)}): "
            f"{runtime_cause(exc).rstrip('. ')}. Check the preprocessing (size, layout, channels) against the "
            "model's input.",
        ) from None
    finally:
        session.close()
    arrays = {f"in/0/{name}": value for name, value in feeds.feeds.items()}
    arrays.update({f"out/0/{name}": value for name, value in outputs.items()})
    np.savez(payload["store"], **arrays)
    semantics = semantics_map(payload.get("semantics"))
    return playground.json_safe(
        {
            "input": {
                "kind": feeds.kind,
                "applied": list(feeds.applied),
                "preprocessing": feeds.preprocessing,
                "image_size": list(feeds.image_size) if feeds.image_size else None,
                "shapes": {name: list(np.shape(value)) for name, value in feeds.feeds.items()},
            },
            "outputs": playground.summarize_outputs(outputs, semantics, feeds, playground.model_input_size(feeds)),
        }
    )


def trial_variant_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """The playground's run of one variant on the feeds `trial` saved, with its backend.

    payload: {"backend", "variant": path, "store": path, "semantics", "input": the "input" part
    of the trial's result (for mapping boxes to the image)}. Returns {"outputs": summaries,
    "difference": vs the original (`playground.difference`)}.
    """
    from workers.engine import playground
    from workers.engine.backends.registry import get_backend
    from workers.engine.outputs import semantics_map
    from workers.engine.parity import run_session

    store = Path(payload["store"])
    inputs, reference = _load_runs(store, "in"), _load_runs(store, "out")
    progress(0.2, f"running the variant with {payload['backend']}")
    session = get_backend(payload["backend"]).load(Path(payload["variant"]))
    try:
        outputs = run_session(session, inputs)[0]
    finally:
        session.close()
    semantics = semantics_map(payload.get("semantics"))
    described = payload.get("input") or {}
    image_size = described.get("image_size")
    feeds = playground.Feeds(
        {},
        str(described.get("kind") or ""),
        (),
        described.get("preprocessing"),
        tuple(image_size) if image_size else None,
    )
    return playground.json_safe(
        {
            "outputs": playground.summarize_outputs(outputs, semantics, feeds, playground.model_input_size(feeds)),
            "difference": playground.difference(reference[0], outputs, semantics),
        }
    )


def _selftest_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Used by the sandbox's own tests: behave as asked (echo, crash, allocate, hang, reject)."""
    import os
    import signal
    import time

    from workers.engine.errors import ModelError

    action = payload.get("action")
    if action == "echo":
        print("noise on stdout must not break the protocol")
        progress(0.5, "halfway")
        return {"echo": payload.get("value")}
    if action == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "allocate":
        blob = bytearray(int(payload["bytes"]))
        return {"allocated": len(blob)}
    if action == "hang":
        time.sleep(3600)
    if action == "connect":
        import socket

        socket.create_connection(("127.0.0.1", int(payload["port"])), timeout=2)
        return {"connected": True}
    if action == "reject":
        raise ModelError("invalid_model", "The model is not valid.")
    if action == "attempt":
        return {"outcome": _attempt(str(payload["attack"]), payload)}
    raise ValueError(f"unknown action {action!r}")


def _attempt(attack: str, payload: dict[str, Any]) -> Any:
    """What untrusted code inside the sandbox would try, for the boundary's tests: the outcome
    ("ok: ..." with what it got, or "refused: <error>")."""
    import ctypes
    import os
    import subprocess
    import time

    libc = ctypes.CDLL(None, use_errno=True)

    def syscall_outcome(result: int) -> str:
        return f"ok: {result}" if result == 0 else f"refused: errno {ctypes.get_errno()}"

    try:
        if attack == "read":
            with open(payload["path"], "rb") as source:
                return "ok: " + source.read(4096).decode("latin-1")
        if attack == "write":
            with open(payload["path"], "w") as target:
                target.write("written from the sandbox")
            return "ok: written"
        if attack == "listdir":
            return "ok: " + " ".join(sorted(os.listdir(payload["path"])))
        if attack == "processes":
            return "ok: " + " ".join(sorted(e for e in os.listdir("/proc") if e.isdigit()))
        if attack == "native_connect":
            import _socket  # the C socket type: what native code uses, untouched by forbid_network

            sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
            sock.settimeout(2)
            sock.connect(("127.0.0.1", int(payload["port"])))
            return "ok: connected"
        if attack in ("raw_socket", "packet_socket"):
            import _socket

            family = _socket.AF_INET if attack == "raw_socket" else 17  # AF_PACKET
            proto = _socket.IPPROTO_ICMP if attack == "raw_socket" else 0
            _socket.socket(family, _socket.SOCK_RAW, proto).close()
            return "ok: opened"
        if attack == "exec":
            completed = subprocess.run([payload["path"], *payload.get("args", [])], capture_output=True, timeout=10)
            return f"ok: exit {completed.returncode}: {completed.stdout[:200]!r}"
        if attack == "ptrace":
            return syscall_outcome(libc.ptrace(0, 0, None, None))  # PTRACE_TRACEME
        if attack == "unshare":
            return syscall_outcome(libc.unshare(0x10000000))  # CLONE_NEWUSER
        if attack == "mount":
            return syscall_outcome(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
        if attack == "identity":
            with open("/proc/self/status") as lines:
                status = {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}
            return {
                "uid": os.getuid(),
                "euid": os.geteuid(),
                "cap_eff": status.get("CapEff"),
                "seccomp": status.get("Seccomp"),
                "no_new_privs": status.get("NoNewPrivs"),
                "environment": sorted(os.environ),
                "hostname": os.uname().nodename,
            }
        if attack == "fork_bomb":
            children = 0
            try:
                while children < int(payload.get("at_most", 100000)):
                    if os.fork() == 0:
                        try:
                            time.sleep(3600)
                        finally:
                            os._exit(0)
                    children += 1
            except OSError as exc:
                return f"refused: after {children} processes: {exc}"
            return f"ok: {children} processes"
    except Exception as exc:  # the outcome is the point
        return f"refused: {type(exc).__name__}: {exc}"
    raise ValueError(f"unknown attack {attack!r}")


ENTRYPOINTS: dict[str, Callable[[dict[str, Any], ProgressCallback], dict[str, Any]]] = {
    "import": import_entry,
    "inspect": inspect_entry,
    "validate": validate_entry,
    "optimize": optimize_entry,
    "parity_reference": parity_reference_entry,
    "parity_variant": parity_variant_entry,
    "trial": trial_entry,
    "trial_variant": trial_variant_entry,
    "selftest": _selftest_entry,
}
