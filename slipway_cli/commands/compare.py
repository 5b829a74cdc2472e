"""`slipway compare A B`: two versions or two variants side by side on one hardware profile."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from slipway_cli.context import Context
from slipway_cli.errors import ExitCode
from slipway_cli.output import number, table, write_json

HELP = "compare two versions, or two variants, side by side on one hardware profile"
REF_HELP = (
    "a version id (17) or MODEL:NUMBER (scorer:3, scorer:latest), optionally with /VARIANT "
    "(17/ort-int8; scorer:3/original for the original model in plain onnxruntime); without a "
    "variant, the version's recommended one"
)
DESCRIPTION = """\
Compare A (before) with B (after) on one hardware profile, as measured now: latency (p50,
p99, CPU time per inference) with its 95% interval, throughput, accuracy per output against
each side's own FP32 original, op support of each side's runtime, and file size. A change is
only called where the intervals say it is beyond the noise; otherwise it reads "no change".
Without --profile, the only profile both sides ran on is used."""
EPILOG = """\
examples:
  slipway compare scorer:2 scorer:3                  the recommended variants of v2 and v3
  slipway compare scorer:3/original scorer:3/ort-int8 --profile x86-cpu

exit codes:
  0  the comparison was printed (whatever it says)
  2  error: a reference names nothing you can see, no common profile, API or connection error"""

_STATISTICS = (("p50_ms", "p50 latency"), ("p99_ms", "p99 latency"), ("cpu_ms", "CPU time / inference"))
_METRICS = (("cosine", "cosine"), ("top1_agreement", "top-1 agreement"), ("max_abs_error", "max abs error"))


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "compare",
        parents=[common],
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("a", metavar="A", help=f"the side before: {REF_HELP}")
    parser.add_argument("b", metavar="B", help="the side after, written like A")
    parser.add_argument("--profile", metavar="SLUG", help="the hardware profile to compare on")
    parser.add_argument("--team", help="team slug, when a model exists in several of your teams")
    parser.add_argument("--json", action="store_true", help="print the comparison as the API returns it")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    comparison = client.get("compare/", {"a": args.a, "b": args.b, "profile": args.profile, "team": args.team})
    if args.json:
        write_json(comparison, ctx.out)
    else:
        ctx.out.write(render(comparison))
    return ExitCode.OK


# ---- rendering -------------------------------------------------------------------------


def side_name(side: Mapping[str, Any]) -> str:
    """ "scorer v3 (ort-int8)"."""
    variant = f" ({side['variant']})" if side.get("variant") else ""
    return f"{side.get('model')} v{side.get('number')}{variant}"


def figure(value: Mapping[str, Any] | None, unit: str = "ms") -> str:
    """A measured figure with its 95% interval: "1.031 ms [1.026-1.037]"; why there is none otherwise."""
    value = value or {}
    if value.get("value") is None:
        return str(value.get("how") or "-")
    # Four digits: an interval of +/- 0.2 % must not print as [3-3].
    show = _per_second if unit == "/s" else _four_digits
    shown = f"{show(value.get('value'))}{'/s' if unit == '/s' else ' ' + unit}"
    low, high = value.get("low"), value.get("high")
    if low is None or high is None:
        return f"{shown} (no interval)"
    return f"{shown} [{show(low)}-{show(high)}]"


def _four_digits(value: Any) -> str:
    return number(value, digits=4)


def _per_second(value: Any) -> str:
    """Inferences per second to four digits, whole numbers with separators from 1,000 up."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _change_cell(change: Mapping[str, Any] | None) -> str:
    """The verdict in a word, with the band of the ratio where there is one."""
    if not change:
        return "-"
    verdict = str(change.get("verdict") or "unknown").replace("_", " ")
    low, high = change.get("ratio_low"), change.get("ratio_high")
    if (
        verdict in ("faster", "slower", "higher", "lower")
        and isinstance(low, int | float)
        and isinstance(high, int | float)
    ):
        band = f"{low:.2f}-{high:.2f}x" if verdict in ("faster", "higher") else f"{1 / high:.2f}-{1 / low:.2f}x"
        return f"{verdict} {band}"
    return verdict


def _accuracy_cell(value: Any) -> str:
    return number(value, digits=6)


def render(comparison: Mapping[str, Any]) -> str:
    """The comparison as text: the two sides in columns, then every verdict as a sentence."""
    a: Mapping[str, Any] = comparison.get("a") or {}
    b: Mapping[str, Any] = comparison.get("b") or {}
    lines = [f"{side_name(b)} against {side_name(a)} on {comparison.get('profile')}", str(comparison.get("summary"))]
    latency = {str(c.get("what")): c for c in comparison.get("latency") or [] if isinstance(c, Mapping)}
    rows = [
        ["variant", _variant(a), _variant(b), ""],
        ["backend", _backend(a), _backend(b), ""],
        ["status", str(a.get("status")), str(b.get("status")), ""],
    ]
    for key, label in _STATISTICS:
        headline = " *" if key == comparison.get("headline") else ""
        rows.append(
            [
                label + headline,
                figure((a.get("latency") or {}).get(key)),
                figure((b.get("latency") or {}).get(key)),
                _change_cell(latency.get(key)),
            ]
        )
    throughput = [figure(a.get("throughput"), "/s"), figure(b.get("throughput"), "/s")]
    rows.append(["throughput", *throughput, _change_cell(comparison.get("throughput"))])
    accuracy = {str(c.get("what")): c for c in comparison.get("accuracy") or [] if isinstance(c, Mapping)}
    a_outputs = {str(o.get("name")): o for o in a.get("outputs") or [] if isinstance(o, Mapping)}
    b_outputs = {str(o.get("name")): o for o in b.get("outputs") or [] if isinstance(o, Mapping)}
    for name in [*a_outputs, *(n for n in b_outputs if n not in a_outputs)]:
        for metric, label in _METRICS:
            before, after = (a_outputs.get(name) or {}).get(metric), (b_outputs.get(name) or {}).get(metric)
            change = accuracy.get(f"{name}:{metric}")
            if before is None and after is None and change is None:
                continue
            rows.append([f"{name}: {label}", _accuracy_cell(before), _accuracy_cell(after), _change_cell(change)])
    rows.append(["parity", _parity(a), _parity(b), ""])
    rows.append(["op support", _support(a), _support(b), _change_cell(comparison.get("support"))])
    rows.append(["size", _size(a.get("size_bytes")), _size(b.get("size_bytes")), _change_cell(comparison.get("size"))])
    rows.append(["measured on", str(a.get("measured_on") or "-"), str(b.get("measured_on") or "-"), ""])
    lines.append("")
    lines.extend(table(["", f"A: {a.get('ref')}", f"B: {b.get('ref')}", "CHANGE"], rows))
    if comparison.get("headline"):
        lines.append(f"(* the headline statistic; intervals are 95%; A is {side_name(a)}, B is {side_name(b)})")
    lines.append("")
    lines.append("Verdicts:")
    changes = [
        *latency.values(),
        comparison.get("throughput"),
        *accuracy.values(),
        comparison.get("size"),
        comparison.get("support"),
    ]
    lines.extend(f"  {c.get('sentence')}" for c in changes if isinstance(c, Mapping) and c.get("sentence"))
    notes = [
        *(comparison.get("notes") or []),
        *(f"A: {n}" for n in a.get("notes") or []),
        *(f"B: {n}" for n in b.get("notes") or []),
    ]
    if notes:
        lines.append("Notes:")
        lines.extend(f"  {note}" for note in notes)
    return "\n".join(lines) + "\n"


def _variant(side: Mapping[str, Any]) -> str:
    return f"{side.get('variant') or '-'} ({side.get('chosen')})"


def _backend(side: Mapping[str, Any]) -> str:
    return f"{side.get('backend') or '-'}, {side.get('precision') or '-'}"


def _parity(side: Mapping[str, Any]) -> str:
    passed = side.get("parity_passed")
    verdict = "pass" if passed else "FAIL" if passed is False else "not checked"
    samples = side.get("parity_samples")
    return f"{verdict} ({samples} samples)" if samples and passed is not None else verdict


def _support(side: Mapping[str, Any]) -> str:
    verdict = str(side.get("support_verdict") or "not checked")
    unsupported = side.get("unsupported_ops") or []
    fallback = side.get("fallback_ops") or []
    detail = f"; can't run {', '.join(unsupported)}" if unsupported else ""
    detail += f"; falls back: {', '.join(fallback)}" if fallback else ""
    return verdict + detail


def _size(size: Any) -> str:
    """A file size as the browser shows it: "812 B", "3.9 KiB"."""
    if not isinstance(size, int) or isinstance(size, bool):
        return "-"
    value, unit = float(size), 0
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{size} B"
    return f"{value:.0f} {units[unit]}" if value >= 100 else f"{value:.1f} {units[unit]}"
