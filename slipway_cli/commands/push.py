"""`slipway push`: upload a model version, streamed from disk, and optionally wait for its pipeline."""

from __future__ import annotations

import argparse
import json
import re
import uuid
from pathlib import Path
from typing import Any

from slipway_cli.client import IDEMPOTENCY_BUSY, ApiClient
from slipway_cli.context import Context
from slipway_cli.errors import ApiError, CliError, ExitCode
from slipway_cli.multipart import FilePart, MultipartBody, file_part
from slipway_cli.output import write_json
from slipway_cli.progress import UploadProgress
from slipway_cli.versions import (
    check_slug,
    describe,
    poll_seconds,
    report_failure,
    report_unmeasured,
    report_waiting_profiles,
    unmeasured_profiles,
    wait_for_version,
)

HELP = "upload a model version (streamed), optionally wait for its pipeline"
DESCRIPTION = """\
Upload FILE as a new version of the model NAME (created with it in your team if it does not
exist yet; give --team when you may upload in several), streamed from disk with a progress
bar on stderr. Slipway then converts, inspects, validates, optimizes, checks parity,
benchmarks and recommends a variant per hardware profile; --wait follows those steps until
the version is ready for review or has failed.

FILE is an ONNX model (.onnx, or a .zip holding model.onnx plus its external data), or a
framework file Slipway converts: TorchScript (give --inputs), torch.export, a zipped
TensorFlow SavedModel, Keras .keras, TFLite, scikit-learn (skops), XGBoost, LightGBM, or one
.zip of a Caffe model (.prototxt + .caffemodel), an MXNet model (-symbol.json + .params;
give --inputs) or a PaddlePaddle model (.pdmodel or .json + .pdiparams).

Each push sends a fresh Idempotency-Key and reuses it when it retries after a lost
connection, so a retried upload never makes two versions.

JSON options take the JSON itself or @FILE to read it from a file."""
EPILOG = """\
exit codes:
  0  uploaded (with --wait: the pipeline finished and every profile has measured evidence)
  1  with --wait: the pipeline failed, or a profile has nothing measured (the reason is printed)
  2  error: bad arguments, API or connection error, or --timeout passed first

examples:
  slipway push model.onnx --model fraud-scorer --wait
  VERSION=$(slipway push model.onnx --model fraud-scorer --profile x86-cpu,nvidia-gpu \\
      --tolerance '{"min_cosine": 0.999}' --wait --print-id)"""

OBJECTIVES = ("p99_latency_batch1", "throughput_within_p99_budget")
# Seconds before each retry of an upload (after a lost connection, or while the server still
# works on an earlier attempt with the same Idempotency-Key).
UPLOAD_RETRY_DELAYS = (2.0, 10.0)
# The server answers once the upload is stored; for a big model on object storage that can take a while.
UPLOAD_READ_TIMEOUT = 900.0


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "push",
        parents=[common],
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", type=Path, help="the model file to upload")
    parser.add_argument("--model", required=True, metavar="NAME", help="model slug, e.g. fraud-scorer")
    parser.add_argument("--team", help="team slug; needed when you are in several teams")
    parser.add_argument(
        "--profile",
        "--profiles",
        dest="profiles",
        action="append",
        metavar="A,B",
        help="hardware profiles to build and benchmark for, comma-separated or repeated "
        "(default: the server's; see GET /api/v1/profiles/)",
    )
    parser.add_argument("--calibration", type=Path, metavar="F.npz", help="inputs for INT8 static quantization (.npz)")
    parser.add_argument(
        "--validation", type=Path, metavar="F.npz", help="inputs for the parity check (.npz; generated otherwise)"
    )
    parser.add_argument(
        "--inputs",
        metavar="JSON",
        help='input signature for formats that carry none, e.g. \'[{"name": "x", "shape": ["batch", 8], '
        '"dtype": "float32"}]\'',
    )
    parser.add_argument(
        "--declare-inputs",
        dest="declare_inputs",
        metavar="FILE.json",
        help="what the inputs take, used when Slipway generates inputs: a JSON file (or the JSON itself), e.g. "
        '\'{"inputs": {"sr": {"values": [8000, 16000]}, "state": {"kind": "state", "batch_axis": 1}}, '
        '"dims": {"height": {"typical": 640, "step": 32}}}\'',
    )
    parser.add_argument(
        "--declare-outputs",
        dest="declare_outputs",
        metavar="FILE.json",
        help="what each output is, so that parity judges it by kind: a JSON file (or the JSON itself), e.g. "
        '\'{"output0": {"kind": "detection", "boxes": [0, 4], "scores": [4, 84]}, "logits": {"kind": "classifier"}}\'',
    )
    parser.add_argument(
        "--tolerance", metavar="JSON", help='accuracy tolerance, e.g. \'{"min_cosine": 0.999, "max_abs_error": 1e-3}\''
    )
    parser.add_argument("--objective", choices=OBJECTIVES, help="what the recommendation optimizes")
    parser.add_argument(
        "--p99-budget-ms", type=float, metavar="MS", help="p99 latency budget (needed by throughput_within_p99_budget)"
    )
    parser.add_argument(
        "--benchmark", metavar="JSON", help='benchmark sweep, e.g. \'{"batch_sizes": [1, 8], "concurrency": [1, 4]}\''
    )
    parser.add_argument("--notes", default="", help="release notes for this version")
    parser.add_argument("--wait", action="store_true", help="wait until the pipeline has finished")
    parser.add_argument(
        "--timeout", type=float, default=3600, metavar="SECONDS", help="how long --wait waits (default 3600)"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the version object as JSON on stdout")
    output.add_argument(
        "--print-id", action="store_true", help="print only the version id on stdout (for VERSION=$(...))"
    )
    parser.set_defaults(run=run)


def _json_option(name: str, value: str | None) -> str | None:
    """The option's JSON text (read from @FILE if so given), checked to parse."""
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{name}: can't read {path}: {exc.strerror}.") from exc
    try:
        json.loads(value)
    except ValueError as exc:
        raise CliError(f"{name} is not valid JSON ({exc}). Quote it for the shell: {name} '{{\"key\": 1}}'.") from exc
    return value


def _form(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list[FilePart]]:
    fields: list[tuple[str, str]] = []
    if args.team:
        fields.append(("team", args.team))
    if args.notes:
        fields.append(("notes", args.notes))
    if args.profiles:
        profiles = [p.strip() for item in args.profiles for p in item.split(",") if p.strip()]
        fields.append(("profiles", ",".join(profiles)))
    for name, option in (("inputs", "--inputs"), ("tolerance", "--tolerance"), ("benchmark", "--benchmark")):
        text = _json_option(option, getattr(args, name))
        if text is not None:
            fields.append((name, text))
    for option, attribute, field in (
        ("--declare-inputs", "declare_inputs", "input_declarations"),
        ("--declare-outputs", "declare_outputs", "output_declarations"),
    ):
        declared = getattr(args, attribute, None)
        if declared is not None:
            # A file name is what the option expects; JSON given inline (starting with "{") works too.
            inline = declared.lstrip().startswith(("{", "@"))
            text = _json_option(option, declared if inline else f"@{declared}")
            fields.append((field, text or ""))
    if args.objective:
        fields.append(("objective", args.objective))
    if args.p99_budget_ms is not None:
        fields.append(("p99_budget_ms", repr(args.p99_budget_ms)))
    files = [file_part("file", args.file)]
    for name in ("calibration", "validation"):
        if getattr(args, name) is not None:
            files.append(file_part(name, getattr(args, name)))
    return fields, files


def upload(ctx: Context, args: argparse.Namespace, client: ApiClient) -> dict[str, Any]:
    """POST the version; retried on a lost connection with the same Idempotency-Key."""
    model = check_slug(args.model)
    fields, files = _form(args)
    key = str(uuid.uuid4())
    progress = UploadProgress(f"Uploading {args.file.name}", ctx.err)
    boundary = f"slipway-{uuid.uuid4().hex}"

    def on_progress(sent: int, total: int) -> None:
        progress.update(sent, total)
        if sent >= total:
            progress.finish(total)

    def body() -> MultipartBody:
        return MultipartBody(fields, files, boundary=boundary, on_progress=on_progress)

    delays = UPLOAD_RETRY_DELAYS
    attempts = len(delays) + 1

    def on_retry(exc: CliError, attempt: int, delay: float) -> None:
        what = "The server is still working on the previous attempt" if _busy(exc) else "The upload was interrupted"
        ctx.err.write(
            f"\n{what}: {exc.message}\nRetrying in {delay:g} s (attempt {attempt} of {attempts}) with the same "
            "Idempotency-Key, so the server keeps a single version.\n"
        )
        progress.restart()

    try:
        version: dict[str, Any] = client.request(
            "POST",
            f"models/{model}/versions/",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Idempotency-Key": key},
            timeout=(10.0, UPLOAD_READ_TIMEOUT),
            retry_delays=delays,
            on_retry=on_retry,
        )
    except CliError as exc:
        if isinstance(exc, ApiError) and exc.code == "inputs_required":
            exc.message = _with_inputs_option(exc.message)
        if exc.transient:
            # An attempt may have reached the server: a blind re-push (new key) could make two versions.
            exc.details.append(
                f"An attempt may still have created the version: check `slipway models list` (or "
                f"GET /api/v1/models/{model}/versions/) before pushing again."
            )
        raise
    return version


# How the API asks for an input signature: "send the 'inputs' field ... for example inputs=[...]".
_INPUTS_FIELD = re.compile(r"send the 'inputs' field")
_INPUTS_EXAMPLE = re.compile(r"inputs=(\[.*?\])(?= )")


def _with_inputs_option(message: str) -> str:
    """The API's request for the 'inputs' field in the CLI's words, with --inputs."""
    if not _INPUTS_FIELD.search(message):
        return f"{message} With the CLI, pass --inputs JSON."
    message = _INPUTS_FIELD.sub("pass --inputs", message)
    return _INPUTS_EXAMPLE.sub(lambda m: f"--inputs '{m.group(1)}'", message)


def _busy(exc: CliError) -> bool:
    return isinstance(exc, ApiError) and exc.code in IDEMPOTENCY_BUSY


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    interval = poll_seconds(ctx.env)  # a bad setting stops us before the upload, not after it
    version = upload(ctx, args, client)
    ctx.err.write(
        f"Created {describe(version)} in team {version.get('team')}; its pipeline is {version.get('status')}.\n"
    )
    report_waiting_profiles(version, ctx.err)
    if args.print_id:
        ctx.out.write(f"{version['id']}\n")
        ctx.out.flush()
    if not args.wait:
        if args.json:
            write_json(version, ctx.out)
        elif not args.print_id:
            ctx.out.write(
                f"Uploaded {describe(version)}. Follow it with: slipway report {version['id']}  "
                f"(or slipway gate {version['id']} --wait)\n"
            )
        return ExitCode.OK
    ctx.err.write(f"Waiting for the pipeline (up to {args.timeout:g} s)...\n")
    final = wait_for_version(client, int(version["id"]), args.timeout, ctx.err, interval=interval)
    if args.json:
        write_json(final, ctx.out)
    if final.get("status") == "failed":
        report_failure(final, ctx.err)
        return ExitCode.FAILED
    unmeasured = unmeasured_profiles(final)
    if unmeasured:
        # Ready for review on the other profiles, but a build that asked for these must not pass.
        report_unmeasured(final, unmeasured, ctx.err)
        return ExitCode.FAILED
    if not args.json and not args.print_id:
        ctx.out.write(
            f"{describe(final)} is {final.get('status')}. "
            f"Next: slipway report {final['id']}; slipway gate {final['id']}\n"
        )
    else:
        ctx.err.write(f"{describe(final)} is {final.get('status')}.\n")
    return ExitCode.OK
