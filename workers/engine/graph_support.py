"""Which drawn node each backend runs: a validate report's op support, mapped onto the graph's nodes.

A backend's support report (`ValidateReport.reports[backend].ops`) groups the model's nodes by
operator and outcome: each entry has a status (supported / unsupported / fallback) and the
labels of the nodes it covers. It is the data the support matrix is built from
(`support_matrix.build_matrix`), read entry by entry, because the matrix keeps one cell per
operator and backend where a backend may split one operator's nodes over several outcomes
(a Conv on the GPU, another on the CPU). Per node of the drawn graph:

- an entry that lists the node's label decides it (the worst outcome, should two list it);
- an entry that lists no nodes speaks for every node of its operator no listing entry named;
- a node no entry names takes its operator's outcome when all the operator's entries agree
  on one, else it is "unknown", with the reason the matrix gives an unanswered cell (the
  backend's error, or "gave no answer"), as is every node of a backend that could not answer;
- a node with If/Loop/Scan bodies takes the worst of its own outcome and its bodies' nodes'.

Backends label nodes one of two ways (`_onnx_graph.label_nodes`, `_onnx_graph.node_labels`);
they agree for named nodes. Each report is matched with the way that finds more of its labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from workers.engine.onnx_walk import DEFAULT_DOMAIN
from workers.engine.reports import BackendSupport, ValidateReport

NodeStatus = Literal["supported", "unsupported", "fallback", "unknown"]

# Worst first wins: a node that one report says falls back and another refuses is refused.
_RANK: dict[str, int] = {"supported": 0, "unknown": 1, "fallback": 2, "unsupported": 3}


@dataclass(frozen=True)
class NodeOutcome:
    """Nodes (their graph ids) that share one outcome on one backend, and why."""

    status: NodeStatus
    nodes: tuple[str, ...]
    reason: str = ""
    device: str = ""
    after_rewrite: str = ""  # the rewrite chain after which the backend runs these nodes ("" when none)


@dataclass(frozen=True)
class BackendNodes:
    """One backend's answer for every drawn node on one hardware profile: each node is in exactly one group."""

    profile: str
    backend: str
    verdict: str
    method: str
    report_only: bool  # a reference column: checked, not built for
    counts: dict[str, int]
    groups: tuple[NodeOutcome, ...]


@dataclass(frozen=True)
class _Decision:
    status: NodeStatus
    reason: str = ""
    device: str = ""
    after_rewrite: str = ""


def node_support(nodes: Sequence[Mapping[str, Any]], report: ValidateReport) -> list[BackendNodes]:
    """Each backend of `report` (a validate report for one profile) judged node by node over
    `nodes`, the drawn graph's nodes (`graph_view.GraphNode.to_dict`), in the report's order."""
    results = []
    report_only = set(report.matrix.report_only)
    for backend, support in sorted(report.reports.items()):
        decisions = _decide(nodes, support)
        groups: dict[tuple[str, str, str, str], list[str]] = {}
        for node in nodes:
            decision = decisions[node["id"]]
            key = (decision.status, decision.reason, decision.device, decision.after_rewrite)
            groups.setdefault(key, []).append(node["id"])
        counts: Counter[str] = Counter(decisions[node["id"]].status for node in nodes)
        results.append(
            BackendNodes(
                profile=report.profile,
                backend=backend,
                verdict=support.verdict,
                method=support.method,
                report_only=backend in report_only,
                counts={status: counts.get(status, 0) for status in _RANK},
                groups=tuple(
                    NodeOutcome(status, tuple(ids), reason, device, after_rewrite)  # type: ignore[arg-type]
                    for (status, reason, device, after_rewrite), ids in groups.items()
                ),
            )
        )
    return results


def _decide(nodes: Sequence[Mapping[str, Any]], support: BackendSupport) -> dict[str, _Decision]:
    ids = [node["id"] for node in nodes]
    by_label = _label_index(nodes, support)
    parents = {node["id"] for node in nodes if node.get("inner")}
    fixed, chain = _rewrites(support)

    own: dict[str, _Decision] = {}
    inner: dict[str, list[_Decision]] = {}
    unlisted: list[tuple[tuple[str, str], _Decision]] = []
    outcomes_by_op: dict[tuple[str, str], set[_Decision]] = {}
    for op in support.ops:
        key = (op.domain or DEFAULT_DOMAIN, op.op_type)
        decision = _Decision(
            op.status,
            op.reason,
            op.device,
            chain if op.status != "supported" and key in fixed else "",
        )
        outcomes_by_op.setdefault(key, set()).add(decision)
        if not op.nodes:
            unlisted.append((key, decision))
        for label in op.nodes:
            targets = by_label.get(label)
            if targets is not None:
                for target in targets:
                    own[target] = _worse(own.get(target), decision)
            elif (parent := _parent(label, parents)) is not None:
                inner.setdefault(parent, []).append(decision)

    ops = {node["id"]: (node.get("dom") or DEFAULT_DOMAIN, node["op"]) for node in nodes}
    for key, decision in unlisted:
        for node_id in ids:
            if node_id not in own and ops[node_id] == key:
                own[node_id] = decision
    unanswered = _Decision(
        "unknown", support.error or f"{support.backend} gave no answer for this op ({support.verdict})."
    )
    decisions = {}
    for node_id in ids:
        found = own.get(node_id)
        if found is None:
            agreed = outcomes_by_op.get(ops[node_id], set())
            found = next(iter(agreed)) if len({each.status for each in agreed}) == 1 else unanswered
        decisions[node_id] = _with_bodies(found, inner.get(node_id, []))
    return decisions


def _label_index(nodes: Sequence[Mapping[str, Any]], support: BackendSupport) -> dict[str, list[str]]:
    """Label -> node ids, in the labelling this backend's report uses (see the module's docstring)."""
    labels = {label for op in support.ops for label in op.nodes}
    reported: dict[str, list[str]] = {}
    in_file_order: dict[str, list[str]] = {}
    for node in nodes:
        reported.setdefault(node["id"], []).append(node["id"])
        in_file_order.setdefault(node.get("alt") or node["id"], []).append(node["id"])
    if len(labels & in_file_order.keys()) > len(labels & reported.keys()):
        return in_file_order
    return reported


def _parent(label: str, parents: set[str]) -> str | None:
    """The drawn node whose If/Loop/Scan body holds the node labelled `label` ("If_0/then_branch/Add_0")."""
    position = label.rfind("/")
    while position > 0:
        if label[:position] in parents:
            return label[:position]
        position = label.rfind("/", 0, position)
    return None


def _rewrites(support: BackendSupport) -> tuple[set[tuple[str, str]], str]:
    """The ops a rewrite chain makes the backend run, and the chain, as the matrix names it."""
    remediation = support.remediation
    if remediation is None:
        return set(), ""
    fixed = {(op.get("domain") or DEFAULT_DOMAIN, op.get("op_type", "")) for op in remediation.fixed}
    return fixed, " + ".join(remediation.rewrites)


def _worse(current: _Decision | None, other: _Decision) -> _Decision:
    return other if current is None or _RANK[other.status] > _RANK[current.status] else current


def _with_bodies(decision: _Decision, bodies: list[_Decision]) -> _Decision:
    """A node holding subgraphs is as bad as the worst node inside them, and says so."""
    worst = max(bodies, key=lambda each: _RANK[each.status], default=None)
    if worst is None or _RANK[worst.status] <= _RANK[decision.status]:
        return decision
    count = sum(1 for each in bodies if each.status == worst.status)
    reason = f"{count} node{'s' if count != 1 else ''} inside its subgraphs: {worst.status}"
    return _Decision(worst.status, f"{reason}. {worst.reason}" if worst.reason else f"{reason}.", worst.device)
