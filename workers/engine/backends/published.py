"""Op support from a runtime's published operator list, for runtimes not installed here.

Each list is a JSON data file in `oplists/` with where it came from and for which version:

    {"runtime": "tensorrt", "version": "10.x", "source": "<URL or document title>",
     "retrieved": "YYYY-MM-DD", "domains": {"ai.onnx": {"Conv": {"status": "supported",
     "note": "..."}, ...}}}

An op type missing from the list counts as unsupported ("not in the published list"). The
report says plainly that the answer comes from the list, not from running the runtime.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from workers.engine.backends.base import OpSupport, SupportReport, verdict_for

OPLIST_DIR = Path(__file__).resolve().parent / "oplists"
DEFAULT_DOMAIN = "ai.onnx"


@dataclass(frozen=True)
class PublishedOpList:
    runtime: str
    version: str
    source: str
    retrieved: str
    domains: dict[str, dict[str, dict[str, str]]]

    def lookup(self, domain: str, op_type: str) -> tuple[str, str]:
        """(status, note) for an op; status is supported, unsupported or fallback."""
        entry = self.domains.get(domain or DEFAULT_DOMAIN, {}).get(op_type)
        if entry is None:
            return "unsupported", f"{op_type} is not in {self.runtime}'s published operator list ({self.version})."
        return entry.get("status", "supported"), entry.get("note", "")


@cache
def load_published_list(runtime: str) -> PublishedOpList | None:
    """The published list for a runtime, or None when Slipway ships none for it."""
    path = OPLIST_DIR / f"{runtime}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return PublishedOpList(
        runtime=data["runtime"],
        version=data["version"],
        source=data["source"],
        retrieved=data.get("retrieved", ""),
        domains=data["domains"],
    )


def report_from_published_list(backend: str, model_path: Path, oplist: PublishedOpList) -> SupportReport:
    """Judge every node of the model (subgraphs included) against the published list."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    nodes: dict[tuple[str, str], list[str]] = defaultdict(list)

    def walk(graph: onnx.GraphProto) -> None:
        for index, node in enumerate(graph.node):
            nodes[(node.domain or DEFAULT_DOMAIN, node.op_type)].append(node.name or f"{node.op_type}_{index}")
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        walk(sub)

    walk(model.graph)
    ops = []
    for (domain, op_type), names in sorted(nodes.items()):
        status, note = oplist.lookup(domain, op_type)
        ops.append(OpSupport(op_type=op_type, domain=domain, status=status, reason=note, nodes=tuple(names)))  # type: ignore[arg-type]
    supported = sum(1 for op in ops if op.status == "supported")
    verdict = verdict_for(supported, len(ops))
    return SupportReport(
        backend=backend,
        runtime_version=None,
        installed=False,
        method="published_list",
        verdict=verdict,
        ops=tuple(ops),
        notes=(
            f"{backend} is not installed on this worker: this answer comes from its published operator list "
            f"(version {oplist.version}, {oplist.source}), not from running the runtime.",
        ),
    )
