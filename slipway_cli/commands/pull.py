"""`slipway pull`: download one artifact of a version (a variant, the upload, its ONNX model),
checked by sha256 before it takes its name."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from slipway_cli import client as client_module
from slipway_cli.client import ApiClient
from slipway_cli.context import Context
from slipway_cli.errors import CliError, ExitCode
from slipway_cli.output import table
from slipway_cli.progress import UploadProgress, human_bytes
from slipway_cli.versions import VERSION_HELP, VersionRef, resolve_version

HELP = "download a version's variant, original upload or ONNX model, checked by sha256"
DESCRIPTION = """\
Download one artifact of a version into a folder: a variant (--variant NAME, as the report
names it, or PROFILE/NAME when several profiles built one of that name), the uploaded file
(--original) or its ONNX model (--onnx). The file is written aside, its sha256 compared with
the one the server sends (X-Slipway-SHA256), and only then renamed into place: a file with
the final name is always whole. Without a selector, lists the version's artifacts."""
EPILOG = """\
examples:
  slipway pull scorer:3 --variant ort-int8 -o models/
  slipway pull scorer:latest --onnx

exit codes:
  0  downloaded and checked; its path, size and sha256 are printed
  2  error: no artifact chosen (the list is printed), unknown variant, API or connection
     error, or the bytes received do not match their sha256 (nothing is left behind)"""

CHUNK_BYTES = 1024 * 1024
ONNX_FORMATS = ("onnx", "onnx-zip")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FILENAME = re.compile(r'filename="([^"]*)"')


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "pull",
        parents=[common],
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("version", metavar="VERSION", help=VERSION_HELP)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--variant", metavar="NAME", help="a variant, e.g. ort-int8 (or x86-cpu/ort-int8)")
    which.add_argument("--original", action="store_true", help="the file that was uploaded")
    which.add_argument("--onnx", action="store_true", help="the ONNX model (the upload's conversion, or the upload)")
    which.add_argument("--artifact", metavar="ID", type=int, help="any artifact of the version, by id")
    parser.add_argument("-o", "--output", metavar="DIR", default=".", help="folder to save into (default: here)")
    parser.add_argument("--team", help="team slug, when MODEL exists in several of your teams")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    ref = resolve_version(client, args.version, args.team)
    version = client.get(f"versions/{ref.id}/")
    artifact = choose(version, ref, args)
    folder = _folder(args.output)
    path, size, digest = download(client, artifact, folder, ctx)
    ctx.out.write(f"{path}\n  size    {size:,} bytes ({human_bytes(size)})\n  sha256  {digest}\n")
    return ExitCode.OK


# ---- choosing ---------------------------------------------------------------------------


def _artifacts(version: dict[str, Any]) -> list[dict[str, Any]]:
    """The version's artifacts, newest first; of a name built again by a re-run, the newest only."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for artifact in sorted(version.get("artifacts") or [], key=lambda a: -int(a.get("id") or 0)):
        newest.setdefault((str(artifact.get("kind")), str(artifact.get("name"))), artifact)
    return list(newest.values())


def _short(name: str) -> str:
    """A variant's name without its profile: "x86-cpu/ort-int8" -> "ort-int8"."""
    return name.split("/", 1)[1] if "/" in name else name


def _selector(artifact: dict[str, Any], artifacts: list[dict[str, Any]]) -> str:
    """The option that picks `artifact`, as the list of artifacts shows it."""
    kind, name = artifact.get("kind"), str(artifact.get("name"))
    if kind == "source":
        return "--original"
    if kind == "onnx":
        return "--onnx"
    if kind == "variant":
        shared = sum(1 for a in artifacts if a.get("kind") == "variant" and _short(str(a.get("name"))) == _short(name))
        return f"--variant {_short(name) if shared == 1 else name}"
    return f"--artifact {artifact.get('id')}"


def listing(artifacts: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            _selector(a, artifacts),
            str(a.get("kind") or ""),
            str(a.get("format") or ""),
            human_bytes(int(a.get("size") or 0)),
            str(a.get("sha256") or "")[:12],
        ]
        for a in sorted(artifacts, key=lambda a: (_KIND_ORDER.get(str(a.get("kind")), 9), str(a.get("name"))))
    ]
    return table(["CHOOSE WITH", "KIND", "FORMAT", "SIZE", "SHA256"], rows)


_KIND_ORDER = {"source": 0, "onnx": 1, "variant": 2, "calibration": 3, "validation": 4}


def choose(version: dict[str, Any], ref: VersionRef, args: argparse.Namespace) -> dict[str, Any]:
    """The artifact the options name; a CliError saying what exists otherwise."""
    artifacts = _artifacts(version)
    if args.original:
        source = version.get("source_artifact") or next((a for a in artifacts if a.get("kind") == "source"), None)
        if source is None:
            raise CliError(f"{ref.label} has no uploaded file on record.")
        return dict(source)
    if args.onnx:
        converted = next((a for a in artifacts if a.get("kind") == "onnx"), None)
        source = version.get("source_artifact") or {}
        if converted is None and source.get("format") in ONNX_FORMATS:
            return dict(source)  # an ONNX upload is its own ONNX model
        if converted is None:
            raise CliError(
                f"{ref.label} has no ONNX model yet: its upload ({source.get('format') or 'a framework file'}) is "
                f"converted by the pipeline's import step, which has not finished. See `slipway report {ref.id}`, "
                "or download the upload with --original."
            )
        return converted
    if args.artifact is not None:
        found = next((a for a in version.get("artifacts") or [] if a.get("id") == args.artifact), None)
        if found is None:
            raise CliError(f"{ref.label} has no artifact {args.artifact}.", listing(artifacts))
        return found
    variants = [a for a in artifacts if a.get("kind") == "variant"]
    if args.variant:
        wanted = args.variant.strip()
        exact = [a for a in variants if a.get("name") == wanted]
        matches = exact or [a for a in variants if _short(str(a.get("name"))) == wanted]
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(sorted(str(a.get("name")) for a in matches))
            raise CliError(
                f"Several profiles built a variant called {wanted} for {ref.label} ({names}); "
                "give one as --variant PROFILE/NAME."
            )
        if not variants:
            raise CliError(
                f"{ref.label} has no variants yet: the pipeline's optimize step builds them. "
                f"See `slipway report {ref.id}`."
            )
        known = sorted({_selector(a, artifacts).removeprefix("--variant ") for a in variants})
        raise CliError(f"{ref.label} has no variant called {wanted}; it has: {', '.join(known)}.")
    raise CliError(
        f"Say which artifact of {ref.label} to download: --variant NAME, --original, --onnx or --artifact ID. It has:",
        listing(artifacts) if artifacts else ["(no artifacts yet)"],
    )


# ---- downloading ------------------------------------------------------------------------


class DownloadProgress(UploadProgress):
    """The upload bar, counting bytes received."""

    def finish(self, total: int) -> None:
        if self.tty and self._width:
            self.out.write("\n")
        elapsed = max(self.clock() - self.started, 1e-9)
        self.out.write(f"{self.label}: received {human_bytes(total)} in {elapsed:.1f} s.\n")
        self.out.flush()


def _folder(output: str) -> Path:
    folder = Path(output).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CliError(f"{folder} is a file, not a folder: give -o a folder to save into.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"Could not create the folder {folder}: {exc.strerror or exc}. Give -o another one.") from exc
    return folder


def _filename(response: requests.Response, artifact: dict[str, Any]) -> str:
    """The server's name for the file, reduced to safe characters (never a path elsewhere)."""
    found = _FILENAME.search(response.headers.get("Content-Disposition", ""))
    name = found.group(1) if found else f"artifact-{artifact.get('id')}"
    return _UNSAFE.sub("_", Path(name).name).lstrip("._") or f"artifact-{artifact.get('id')}"


def download(client: ApiClient, artifact: dict[str, Any], folder: Path, ctx: Context) -> tuple[Path, int, str]:
    """Stream the artifact into `folder`, checked by sha256; a lost connection is retried."""
    delays = client_module.RETRY_DELAYS
    for attempt, delay in enumerate([*delays, None], start=1):
        try:
            return _download_once(client, artifact, folder, ctx)
        except CliError as exc:
            if not exc.transient or delay is None:
                raise
            ctx.err.write(f"{exc.message}\nRetrying in {delay:g} s (attempt {attempt + 1} of {len(delays) + 1}).\n")
            time.sleep(delay)
    raise AssertionError("unreachable")


def _download_once(client: ApiClient, artifact: dict[str, Any], folder: Path, ctx: Context) -> tuple[Path, int, str]:
    if client.token is None:
        raise CliError(f"No API token: {client_module.LOGIN_HINT} (or SLIPWAY_TOKEN_FILE).")
    url = client.endpoint(f"artifacts/{artifact['id']}/download/")
    try:
        response = client.session.get(
            url,
            headers={"Accept": "application/octet-stream, application/json"},
            stream=True,
            timeout=(client_module.CONNECT_TIMEOUT, client_module.READ_TIMEOUT),
            allow_redirects=False,
        )
    except requests.exceptions.RequestException as exc:
        raise _lost(client, exc) from exc
    with response:
        if not response.ok or response.is_redirect:
            client._decode(response)  # raises the server's sentence
        expected = response.headers.get("X-Slipway-SHA256") or str(artifact.get("sha256") or "")
        target = folder / _filename(response, artifact)
        total = int(response.headers.get("Content-Length") or artifact.get("size") or 0)
        progress = DownloadProgress(f"Downloading {target.name}", ctx.err)
        fd, partial = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".partial")
        try:
            digest, received = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                try:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        progress.update(received, total)
                except requests.exceptions.RequestException as exc:
                    raise _lost(client, exc) from exc
                out.flush()
                os.fsync(out.fileno())
            if total >= CHUNK_BYTES:
                progress.finish(received)
            if total and received != total:
                raise CliError(
                    f"The download of {target.name} stopped after {received:,} of {total:,} bytes.", transient=True
                )
            if digest.hexdigest() != expected:
                raise CliError(
                    f"The bytes received for {target.name} have sha256 {digest.hexdigest()}, not {expected} as the "
                    "server says they should: the download was damaged on the way, so nothing was saved. Run the "
                    "command again; if it keeps happening, check proxies between you and the server.",
                    exit_code=ExitCode.ERROR,
                )
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return target, received, expected


def _lost(client: ApiClient, exc: Exception) -> CliError:
    reason = client_module._reason(exc)
    if reason == client_module.DROPPED:
        reason = "the connection was closed before the whole file arrived"
    return CliError(
        f"The download from {client.url} failed: {reason}. Check that the server is running and that this "
        "machine can reach it, then run the command again.",
        transient=True,
    )
