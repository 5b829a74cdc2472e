"""`slipway report`: what the pipeline found, per hardware profile, and the gates."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from slipway_cli.client import ApiClient
from slipway_cli.context import Context
from slipway_cli.errors import ApiError, ExitCode
from slipway_cli.output import count, number, rate, table, write_json
from slipway_cli.progress import job_line
from slipway_cli.versions import VERSION_HELP, resolve_version

HELP = "show a version's variants, benchmarks, parity, recommendation, op support and gates"
DESCRIPTION = """\
Show what Slipway found for a version, one section per hardware profile: each variant with
its backend and precision, p50/p99 latency and throughput at batch 1 (and the best
throughput over the sweep), its parity verdict against the FP32 original (worst cosine,
max abs error), the recommended variant and why each other one lost, and each backend's
op-support verdict; then the gates (policies) with their numbers."""
EPILOG = """\
exit codes:
  0  the report was printed (whatever it says; use `slipway gate` to fail a build)
  2  error: unknown version, API or connection error"""

SECTIONS = ("validate", "optimize", "parity", "benchmark", "recommend")


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "report",
        parents=[common],
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("version", metavar="VERSION", help=VERSION_HELP)
    parser.add_argument("--team", help="team slug, when MODEL exists in several of your teams")
    parser.add_argument(
        "--json", action="store_true", help='print {"version": ..., "review": ...} as the API returns them'
    )
    parser.set_defaults(run=run)


def fetch_review(client: ApiClient, version_id: int) -> tuple[dict[str, Any] | None, str | None]:
    """The review (evidence and gates), or None and the server's sentence when there is none yet."""
    try:
        return client.get(f"versions/{version_id}/review/"), None
    except ApiError as exc:
        if exc.status == 409:
            return None, exc.message
        raise


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    ref = resolve_version(client, args.version, args.team)
    version = client.get(f"versions/{ref.id}/")
    review, why_no_review = fetch_review(client, ref.id)
    if args.json:
        write_json({"version": version, "review": review}, ctx.out)
    else:
        ctx.out.write(render(version, review, why_no_review))
    return ExitCode.OK


# ---- rendering -------------------------------------------------------------------------


def _measured_on(reports: Mapping[str, Any], profile: str) -> str:
    """Where the profile's timings were measured, when a device did it, and whether emulated."""
    benchmark = ((reports.get("benchmark") or {}).get(profile) or {}) if isinstance(reports, Mapping) else {}
    on = benchmark.get("measured_on") if isinstance(benchmark, Mapping) else None
    if not isinstance(on, Mapping):
        return ""
    machine = (
        f"{'device ' if on.get('kind') == 'device' else ''}{on.get('name')} ({on.get('arch')}, {on.get('cpu_model')})"
    )
    if on.get("emulation"):
        return (
            f"TIMINGS EMULATED: measured on {machine} under {on['emulation']}: not representative of the device; "
            "op support and parity are the ARM builds'."
        )
    return f"Measured on {machine}." if on.get("kind") == "device" else ""


def render(version: Mapping[str, Any], review: Mapping[str, Any] | None, why_no_review: str | None = None) -> str:
    """The whole human report as text."""
    lines = _header(version)
    reports: Mapping[str, Any] = version.get("reports") or {}
    jobs = (version.get("latest_run") or {}).get("jobs") or []
    readiness = {str(e.get("profile")): e for e in version.get("profile_readiness") or [] if isinstance(e, Mapping)}
    for profile in _profiles(version):
        lines.append("")
        section = _profile_section(profile, reports, [j for j in jobs if j.get("profile") == profile])
        state = readiness.get(profile) or {}
        if state.get("status") == "failed":
            # Before the tables: the first thing to read about a profile with no numbers is why.
            section.insert(1, f"  NO MEASURED EVIDENCE: {state.get('reason') or 'no reason given'}")
        if state.get("service_note"):
            section.insert(1, f"  WAITING FOR HARDWARE: {state['service_note']}")
        if state.get("hardware_note"):
            section.insert(1, f"  MEASURED ON OTHER HARDWARE: {state['hardware_note']}")
        measured = _measured_on(reports, profile)
        if measured:
            section.insert(1, f"  {measured}")
        lines.extend(section)
        lines.extend(_previous_lines(version.get("previous_approved"), profile))
    lines.append("")
    lines.extend(gate_lines(review, why_no_review))
    return "\n".join(lines) + "\n"


def _header(version: Mapping[str, Any]) -> list[str]:
    status = str(version.get("status") or "")
    name = f"{version.get('model')} v{version.get('number')}"
    lines = [f"{name} (id {version.get('id')}, team {version.get('team')}): {status}"]
    if version.get("status_reason") and status in ("failed", "rejected", "revoked"):
        lines.append(f"  {version['status_reason']}")
    created = str(version.get("created_at") or "")[:16].replace("T", " ")
    framework = version.get("framework") or "unknown format"
    lines.append(f"  {framework}, uploaded by {version.get('created_by')} on {created}")
    approval = version.get("approval") or {}
    if approval.get("approved"):
        lines.append(f"  approval: {approval.get('reason')}")
    jobs = (version.get("latest_run") or {}).get("jobs") or []
    unfinished = [j for j in jobs if j.get("status") not in ("succeeded",)]
    if unfinished:
        lines.append("  steps not succeeded:")
        lines.extend(f"    {job_line(j)}" for j in unfinished)
    inspect = (version.get("reports") or {}).get("inspect")
    if isinstance(inspect, Mapping):
        lines.extend(_inspect_lines(inspect))
    return lines


def _inspect_lines(inspect: Mapping[str, Any]) -> list[str]:
    def signature(items: Any) -> str:
        parts = []
        for item in items or []:
            if isinstance(item, Mapping):
                shape = ", ".join(str(d) for d in item.get("shape") or [])
                parts.append(f"{item.get('name')} {item.get('dtype', '')}[{shape}]")
        return "; ".join(parts) or "-"

    lines = [f"  inputs: {signature(inspect.get('inputs'))}", f"  outputs: {signature(inspect.get('outputs'))}"]
    params = (inspect.get("parameters") or {}).get("count")
    flops = (inspect.get("flops") or {}).get("total")
    if params is not None or flops is not None:
        lines.append(f"  parameters: {count(params)}, FLOPs per sample: {count(flops)}")
    return lines


def _profiles(version: Mapping[str, Any]) -> list[str]:
    reports: Mapping[str, Any] = version.get("reports") or {}
    found: set[str] = set()
    for section in SECTIONS:
        value = reports.get(section)
        if isinstance(value, Mapping):
            found.update(str(k) for k in value)
    for job in (version.get("latest_run") or {}).get("jobs") or []:
        if job.get("profile"):
            found.add(str(job["profile"]))
    return sorted(found)


def _at_batch1(points: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    return next((p for p in points if p.get("batch_size") == 1 and p.get("concurrency") == 1), {})


def _best_throughput(points: list[Mapping[str, Any]]) -> str:
    usable = [p for p in points if isinstance(p.get("throughput"), int | float) and not p.get("error")]
    if not usable:
        return "-"
    best = max(usable, key=lambda p: p["throughput"])
    return f"{rate(best['throughput'])} (batch {best.get('batch_size')}, conc {best.get('concurrency')})"


def _parity_cell(parity: Mapping[str, Any] | None) -> str:
    if not parity:
        return "not checked"
    outputs = [o for o in parity.get("outputs") or [] if isinstance(o, Mapping)]
    cosines = [o["cosine"] for o in outputs if isinstance(o.get("cosine"), int | float)]
    errors = [o["max_abs_error"] for o in outputs if isinstance(o.get("max_abs_error"), int | float)]
    figures = (
        f"cos {number(min(cosines), digits=6) if cosines else '-'}, max abs {number(max(errors) if errors else None)}"
    )
    if parity.get("error"):
        return f"FAIL ({parity['error']})"
    return f"{'pass' if parity.get('passed') else 'FAIL'} ({figures})"


def _profile_section(profile: str, reports: Mapping[str, Any], jobs: list[Mapping[str, Any]]) -> list[str]:
    def part(kind: str) -> Mapping[str, Any]:
        value = (reports.get(kind) or {}).get(profile)
        return value if isinstance(value, Mapping) else {}

    optimize, benchmark, parity, recommend, validate = (
        part("optimize"),
        part("benchmark"),
        part("parity"),
        part("recommend"),
        part("validate"),
    )
    lines = [f"Profile {profile}"]
    for job in jobs:
        if job.get("status") == "failed":
            lines.append(f"  {job.get('kind')} failed: {job.get('error') or 'no message'}")
    winner = (recommend.get("winner") or {}).get("name")
    rows = []
    baseline_points = list((benchmark.get("baseline") or {}).get("points") or [])
    if benchmark:
        at1 = _at_batch1(baseline_points)
        rows.append(
            [
                "  (original)",
                "onnxruntime",
                "fp32",
                number(at1.get("p50_ms"), "ms"),
                number(at1.get("p99_ms"), "ms"),
                rate(at1.get("throughput")),
                _best_throughput(baseline_points),
                "reference",
            ]
        )
    measured: Mapping[str, Any] = benchmark.get("variants") or {}
    checked: Mapping[str, Any] = parity.get("variants") or {}
    for variant in optimize.get("variants") or []:
        name = str(variant.get("name"))
        result: Mapping[str, Any] = measured.get(name) or {}
        points = list(result.get("points") or [])
        at1 = _at_batch1(points)
        speed = [number(at1.get("p50_ms"), "ms"), number(at1.get("p99_ms"), "ms")]
        if result.get("error"):
            speed = ["not measured", ""]
        rows.append(
            [
                f"{'* ' if name == winner else '  '}{name}",
                str(variant.get("backend") or ""),
                str(variant.get("precision") or ""),
                *speed,
                rate(at1.get("throughput")),
                _best_throughput(points),
                _parity_cell(checked.get(name)),
            ]
        )
    if rows:
        headers = ["  VARIANT", "BACKEND", "PRECISION", "P50 B1", "P99 B1", "THRU B1", "BEST THRU", "PARITY"]
        lines.extend(table(headers, rows, indent="  "))
    elif optimize:
        lines.append("  no variants were built")
    for backend, message in {**(optimize.get("errors") or {}), **(optimize.get("skipped") or {})}.items():
        lines.append(f"  {backend}: no variants: {message}")
    # What a backend left out and why (static INT8 without calibration data, a conversion that failed).
    for backend, notes in (optimize.get("notes") or {}).items():
        lines.extend(f"  {backend}: {note}" for note in notes or [])
    baseline_error = (benchmark.get("baseline") or {}).get("error")
    if baseline_error:
        lines.append(f"  the original model was not benchmarked: {baseline_error}")
    if recommend:
        lines.extend(_recommendation_lines(recommend))
    else:  # the recommendation says why a variant was not measured; without it, say it here
        for name, result in measured.items():
            if isinstance(result, Mapping) and result.get("error"):
                lines.append(f"  {name} was not benchmarked: {result['error']}")
    if validate:
        lines.extend(_support_lines(validate))
    return lines


def _recommendation_lines(recommend: Mapping[str, Any]) -> list[str]:
    winner = recommend.get("winner") or {}
    name = winner.get("name") if winner else "keep the original model"
    lines = [f"  Recommended (*): {name}", f"    {recommend.get('summary') or ''}".rstrip()]
    losers = [recommend.get("runner_up"), *(recommend.get("others") or [])]
    losers = [o for o in losers if isinstance(o, Mapping)]
    if losers:
        lines.append("  Why the others lost:")
        lines.extend(f"    {o.get('name')}: {o.get('reason') or 'no reason given'}" for o in losers)
    return lines


def _previous_lines(previous: Any, profile: str) -> list[str]:
    """Against the previous approved version, as the server compares them when the version is
    read (latency verdicts only beyond the noise); nothing when there is none."""
    if not isinstance(previous, Mapping):
        return []
    label = f"v{previous.get('number')} (approved)"
    comparison = (previous.get("profiles") or {}).get(profile)
    if isinstance(comparison, Mapping):
        return [f"  Against {label}: {comparison.get('summary') or 'compared, no summary given'}"]
    why = (previous.get("not_compared") or {}).get(profile)
    return [f"  Against {label}: not compared: {why}"] if why else []


def _support_lines(validate: Mapping[str, Any]) -> list[str]:
    lines = ["  Op support:"]
    matrix = validate.get("matrix")
    reference = set(matrix.get("report_only") or []) if isinstance(matrix, Mapping) else set()
    for backend, report in sorted((validate.get("reports") or {}).items()):
        if not isinstance(report, Mapping):
            continue
        runtime = f" {report['runtime_version']}" if report.get("runtime_version") else ""
        verdict = str(report.get("verdict") or "unknown")
        # A profile's reference column: checked by its toolchain, nothing built for it.
        marker = " (reference only, not built)" if backend in reference else ""
        if report.get("installed") is False:
            notes = [str(note) for note in report.get("notes") or []]
            why = f": {notes[0]}" if notes and report.get("method") == "converter" else ""
            lines.append(f"    {backend}{marker}: not installed on the worker{why}")
            continue
        detail = ""
        ops = [o for o in report.get("ops") or [] if isinstance(o, Mapping)]
        unsupported = sorted({str(o.get("op_type")) for o in ops if o.get("status") == "unsupported"})
        fallback = sorted({str(o.get("op_type")) for o in ops if o.get("status") == "fallback"})
        if unsupported:
            detail += f"; unsupported: {', '.join(unsupported)}"
        if fallback:
            detail += f"; falls back: {', '.join(fallback)}"
        if report.get("error"):
            detail += f"; {report['error']}"
        lines.append(f"    {backend}{runtime}{marker}: {verdict}{detail}")
        remediation = report.get("remediation")
        if isinstance(remediation, Mapping) and remediation.get("summary"):
            lines.append(f"      {remediation['summary']}")
    return lines


def _compact(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value, digits=4)
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "))


def gate_line(gate: Mapping[str, Any]) -> str:
    """One gate: "FAIL  p99 fast (max_p99_latency, x86-cpu): 2.31 vs 1 -- <message>"."""
    mark = "pass" if gate.get("passed") else "FAIL"
    return (
        f"{mark}  {gate.get('name')} ({gate.get('kind')}, {gate.get('profile')}): "
        f"{_compact(gate.get('value'))} vs threshold {_compact(gate.get('threshold'))} -- {gate.get('message')}"
    )


def gate_lines(review: Mapping[str, Any] | None, why_no_review: str | None = None) -> list[str]:
    if review is None:
        return [f"Gates: not evaluated. {why_no_review or ''}".rstrip()]
    gates = [g for g in review.get("gates") or [] if isinstance(g, Mapping)]
    if not gates:
        return ["Gates: none apply to this version (its team has no enabled policies for it)."]
    failing = sum(1 for g in gates if not g.get("passed"))
    summary = "all passed" if not failing else f"{failing} of {len(gates)} failed"
    return [f"Gates: {summary}", *(f"  {gate_line(g)}" for g in gates)]
