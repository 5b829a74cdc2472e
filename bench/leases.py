"""Device leases (issue 18, ADR 0016): how soon an idle agent starts a ready step, and what polling
agents cost the server.

Starts Slipway's web app on this machine as each configuration runs it (the embedded default:
SQLite, 2 gunicorn processes x 8 threads; production: PostgreSQL, 3 x 8, as docker-compose.yml
runs it), seeds a team, a version and N registered devices (their credentials as the agent
keeps them), and drives simulated agents: processes of threads, each doing what
`slipway_agent` does on the wire (long-poll `agent/lease/`, honour Retry-After, post a report
for what it leased). Measured:

- **Lease overhead**, at 1 and at 20 agents: ready -> leased (the job's `enqueued_at` to its
  `started_at`, both the server's clock) and leased -> result recorded (`started_at` to
  `finished_at`: the order's trip to the agent and the result's back), p50 and p99 over
  steps made ready one by one at random intervals.
- **Load**, 200 idle agents for a while: errors, the web server's CPU per idle agent, and a
  user's request latency (GET /api/v1/profiles/) with the agents polling against without
  them, interleaved (off, on, off, on), as a ratio.

Writes the "## Device leases" section of BENCHMARKS.md unless --no-write.

    python bench/leases.py                  # the issue's figures (about 6 minutes)
    python bench/leases.py --quick --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PY = sys.executable
PROFILE = "edge-x86"
THREADS_PER_PROCESS = 25

SEED = """
import hashlib, io, json
from apps.accounts.models import Membership, Team
from apps.hardware import devices
from apps.hardware.models import HardwareProfile
from apps.registry.models import Artifact, ArtifactKind, ModelVersion, RegisteredModel
from apps.registry.storage import put_blob
from django.contrib.auth import get_user_model
from onnx import TensorProto, helper
from workers.engine.hardware import describe_hardware

team = Team.objects.create(slug="edge", name="Edge")
admin = get_user_model().objects.create_user("edge-admin")
Membership.objects.create(team=team, user=admin, role="admin")
HardwareProfile.objects.create(slug="{profile}", name="Edge x86", device_kind="cpu", backends=["onnxruntime"],
    precisions=["fp32"], queue="edge", requirements={{"arch": ["x86_64"]}}, options={{}})
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
digest = hashlib.sha256(data).hexdigest()
key, _ = put_blob(io.BytesIO(data), digest)
model = RegisteredModel.objects.create(team=team, name="relu", slug="relu", created_by=admin)
version = ModelVersion.objects.create(model=model, number=1, framework="onnx", created_by=admin)
source = Artifact.objects.create(version=version, kind=ArtifactKind.SOURCE, name="model.onnx", format="onnx",
    sha256=digest, size=len(data), storage_key=key)
version.source_artifact = source
version.save()
probe = describe_hardware().to_dict()
for i in range({devices}):
    _, token = devices.create_enrollment(team, admin, ["{profile}"])
    print(devices.register(token, f"box-{{i}}", probe)[1])
"""

# Steps made ready one by one, at random intervals, as uploads make them.
FEED = """
import random, sys, time
from apps.hardware.models import HardwareProfile
from apps.pipeline import services
from apps.pipeline.models import JobKind
from apps.registry.models import ModelVersion
first = ModelVersion.objects.get(model__slug="relu", number=1)
profile = HardwareProfile.objects.get(slug="{profile}")
rng = random.Random({seed})
base = ModelVersion.objects.filter(model=first.model).count()
for i in range({count}):
    time.sleep(rng.uniform({low}, {high}))
    # A version per step, as uploads make them (each reads the first one's stored model).
    version = ModelVersion.objects.create(model=first.model, number=base + i + 1, framework="onnx",
        created_by=first.created_by, source_artifact=first.source_artifact)
    step = services.PlannedStep(JobKind.VALIDATE, "edge", profile)
    run = services.start_pipeline(version, version.created_by, steps=[step])
    print(run.jobs.get().pk, flush=True)
"""


def _report(order: dict[str, Any]) -> dict[str, Any]:
    from workers.engine.support_matrix import build_matrix

    reports = {
        "onnxruntime": {
            "backend": "onnxruntime", "runtime_version": "bench", "installed": True, "method": "runtime",
            "verdict": "full", "ops": [], "partitions": [], "notes": [],
        }
    }  # fmt: skip
    return {"profile": order["profile"], "reports": reports, "matrix": build_matrix(reports)}


# ---- the simulated agents (a child process runs THREADS_PER_PROCESS of them) -------------------


def _agent_thread(server: str, credential: str, stop_at: float, wait: float, tally: dict[str, int]) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Device {credential}"
    while time.time() < stop_at:
        try:
            answer = session.post(f"{server}/api/v1/agent/lease/", json={"wait": wait}, timeout=60)
        except requests.RequestException:
            tally["errors"] += 1
            time.sleep(1)
            continue
        tally["calls"] += 1
        if answer.status_code == 204:
            tally["busy" if answer.headers.get("Retry-After") else "waited"] += 1
            time.sleep(min(float(answer.headers.get("Retry-After") or 0), max(0.0, stop_at - time.time())))
            continue
        if answer.status_code != 200:
            tally["errors"] += 1
            continue
        order = answer.json()["order"]
        body = {"attempt": order["attempt"], "result": _report(order)}
        posted = session.post(f"{server}/api/v1/agent/jobs/{order['job']}/result/", json=body, timeout=60)
        tally["leased" if posted.status_code == 200 else "errors"] += 1


def _agents_child(args: argparse.Namespace) -> None:
    credentials = json.loads(Path(args.credentials).read_text())
    tally: dict[str, int] = {"calls": 0, "errors": 0, "busy": 0, "waited": 0, "leased": 0}
    threads = [
        threading.Thread(target=_agent_thread, args=(args.server, c, args.stop_at, args.wait, tally), daemon=True)
        for c in credentials
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(timeout=max(0.0, args.stop_at - time.time()) + 90)
    print(json.dumps(tally), flush=True)


def _start_agents(server: str, credentials: list[str], seconds: float, scratch: Path) -> list[subprocess.Popen[str]]:
    stop_at = time.time() + seconds
    procs = []
    for start in range(0, len(credentials), THREADS_PER_PROCESS):
        chunk = scratch / f"agents-{start}.json"
        chunk.write_text(json.dumps(credentials[start : start + THREADS_PER_PROCESS]))
        command = [PY, __file__, "--agents-child", "--server", server, "--credentials", str(chunk)]
        command += ["--stop-at", str(stop_at), "--wait", "20"]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    return procs


def _collect(procs: list[subprocess.Popen[str]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        for key, value in json.loads(out.strip().splitlines()[-1]).items():
            total[key] = total.get(key, 0) + value
    return total


# ---- the server ---------------------------------------------------------------------------------


def _manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [PY, str(REPO / "manage.py"), *args], env=env, cwd=REPO, input=stdin, capture_output=True, text=True, check=True
    ).stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for member in [proc, *proc.children(recursive=True)]:
        try:
            t = member.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


class Server:
    """One configuration of the web app, on a fresh database, seeded with `devices` devices."""

    def __init__(self, name: str, database_url: str, processes: int, devices: int, scratch: Path) -> None:
        self.name, self.processes, self.scratch = name, processes, scratch
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.prod",
            "SLIPWAY_SECRET_KEY": "bench-only-" + os.urandom(32).hex(),
            "SLIPWAY_DATA_DIR": str(scratch),
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/9",
            "SLIPWAY_SSL_REDIRECT": "false",
            "SLIPWAY_LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": str(processes),
            "WEB_THREADS": "8",
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "platform")]),
        }
        _manage(self.env, "migrate", "--noinput")
        seeded = _manage(self.env, "shell", stdin=SEED.format(profile=PROFILE, devices=devices))
        self.credentials = [line for line in seeded.splitlines() if line.startswith("sld_")]
        self.port = _free_port()
        conf = REPO / "platform" / "docker" / "gunicorn.conf.py"
        self.proc = subprocess.Popen(
            [PY, "-m", "gunicorn", "--config", str(conf), "--bind", f"127.0.0.1:{self.port}", "config.wsgi"],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(scratch / "web.log", "w"),  # noqa: SIM115 - lives as long as the process
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise SystemExit(f"gunicorn did not start: {(scratch / 'web.log').read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return _tree_cpu(psutil.Process(self.proc.pid))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def job_times(self, ids: list[int]) -> list[tuple[float, float]]:
        """(ready -> leased, leased -> recorded) in ms for each finished job."""
        script = (
            "import json\nfrom apps.pipeline.models import Job\n"
            f"rows = Job.objects.filter(pk__in={ids!r}, status='succeeded')\n"
            "print(json.dumps([[(j.started_at - j.enqueued_at).total_seconds() * 1000, "
            "(j.finished_at - j.started_at).total_seconds() * 1000] for j in rows]))\n"
        )
        return [tuple(row) for row in json.loads(_manage(self.env, "shell", stdin=script).strip().splitlines()[-1])]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def lease_overhead(server: Server, agents: int, steps: int, seed: int) -> dict[str, Any]:
    """Steps made ready one by one while `agents` agents poll: each step's latencies."""
    procs = _start_agents(server.url, server.credentials[:agents], steps * 1.2 + 40, server.scratch)
    time.sleep(3)  # every agent is polling
    feed = FEED.format(profile=PROFILE, count=steps, seed=seed, low=0.2, high=1.0)
    ids = [int(line) for line in _manage(server.env, "shell", stdin=feed).splitlines() if line.strip().isdigit()]
    time.sleep(3)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=60)
    times = server.job_times(ids)
    leased = [t[0] for t in times]
    recorded = [t[1] for t in times]
    return {
        "agents": agents,
        "steps": len(ids),
        "finished": len(times),
        "leased_p50": _percentile(leased, 0.5),
        "leased_p99": _percentile(leased, 0.99),
        "recorded_p50": _percentile(recorded, 0.5),
        "recorded_p99": _percentile(recorded, 0.99),
    }


def _user_latencies(url: str, token: str, seconds: float) -> list[float]:
    found = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.perf_counter()
        requests.get(f"{url}/api/v1/profiles/", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        found.append((time.perf_counter() - started) * 1000)
        time.sleep(0.1)
    return found


def idle_load(server: Server, agents: int, seconds: float, rounds: int) -> dict[str, Any]:
    """`agents` idle agents polling, in rounds interleaved with rounds without them."""
    token = _manage(
        server.env, "shell", stdin="from apps.accounts.models import ApiToken\nfrom django.contrib.auth import "
        "get_user_model\nprint(ApiToken.issue(get_user_model().objects.get(username='edge-admin'), 'b', ['read'])[1])"
    ).strip().splitlines()[-1]  # fmt: skip
    off: list[float] = []
    on: list[float] = []
    tally: dict[str, int] = {}
    cpu_per_agent: list[float] = []
    for _ in range(rounds):
        off += _user_latencies(server.url, token, seconds / 2)
        procs = _start_agents(server.url, server.credentials[:agents], seconds + 10, server.scratch)
        time.sleep(8)  # every agent started and polling
        cpu_before, started = server.cpu(), time.monotonic()
        on += _user_latencies(server.url, token, seconds)
        used = server.cpu() - cpu_before
        cpu_per_agent.append(used / (time.monotonic() - started) / agents * 100)
        for key, value in _collect(procs).items():
            tally[key] = tally.get(key, 0) + value
    return {
        "agents": agents,
        "tally": tally,
        "cpu_per_agent_pct": cpu_per_agent,
        "user_p50_off": statistics.median(off),
        "user_p50_on": statistics.median(on),
        "user_p99_off": _percentile(off, 0.99),
        "user_p99_on": _percentile(on, 0.99),
        "user_samples": (len(off), len(on)),
    }


# ---- BENCHMARKS.md -----------------------------------------------------------------------------


def write(results: dict[str, Any]) -> None:
    from bench._benchmarks_md import cpu_line, write_section

    lines = [
        "## Device leases",
        "",
        f"`python bench/leases.py` on {cpu_line()}, {os.cpu_count()} cores; web app and simulated agents on the same "
        "machine, loopback (issue 18, docs/adr/0016). Agents are processes of 25 threads, each doing what "
        "`slipway_agent` does on the wire. Times are the server's own (`enqueued_at`, `started_at`, `finished_at`).",
        "",
        "### Lease overhead",
        "",
        "| server | agents polling | steps | ready -> leased p50 / p99 | leased -> result recorded p50 / p99 |",
        "|---|---|---|---|---|",
    ]
    for config in results["configs"]:
        for run in config["overhead"]:
            lines.append(
                f"| {config['name']} | {run['agents']} | {run['finished']}/{run['steps']} | "
                f"{run['leased_p50']:.0f} / {run['leased_p99']:.0f} ms | "
                f"{run['recorded_p50']:.0f} / {run['recorded_p99']:.0f} ms |"
            )
    lines += [
        "",
        "A ready step is found by an agent waiting in a long poll, which the server serves by looking every 0.5 s: "
        "hence the 1-agent p50 near 250 ms. With 20 agents, the few in long polls (a quarter of each web process's "
        "threads) pick up at once, and the others, told to come back after 2.5-7.5 s (Retry-After), only add calls."
        + (
            " A step made ready in the last seconds before the agents stopped was leased in the next phase."
            if any(r["finished"] < r["steps"] for c in results["configs"] for r in c["overhead"])
            else ""
        ),
        "",
        "### Idle agents",
        "",
        "| server | idle agents | calls | errors | web CPU per idle agent | user GET p50 without / with agents | "
        "p99 without / with |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in results["configs"]:
        load = config["load"]
        cpu = load["cpu_per_agent_pct"]
        spread = f" ({min(cpu):.3f}-{max(cpu):.3f} over {len(cpu)} rounds)" if len(cpu) > 1 else ""
        ratio = load["user_p50_on"] / load["user_p50_off"]
        lines.append(
            f"| {config['name']} | {load['agents']} | {load['tally'].get('calls', 0):,} | "
            f"{load['tally'].get('errors', 0)} | {statistics.mean(cpu):.3f} % of a core{spread} | "
            f"{load['user_p50_off']:.1f} / {load['user_p50_on']:.1f} ms ({ratio:.2f}x) | "
            f"{load['user_p99_off']:.1f} / {load['user_p99_on']:.1f} ms |"
        )
    lines += [
        "",
        "User requests were measured with the agents polling and without them, in alternating rounds "
        f"({results['rounds']} of each, {results['seconds']:.0f} s with agents), "
        f"{results['configs'][0]['load']['user_samples'][1]} requests with agents on the first server.",
    ]
    write_section(REPO / "BENCHMARKS.md", "Device leases", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--credentials", help=argparse.SUPPRESS)
    parser.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--wait", type=float, default=20.0, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer steps and shorter rounds")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--database", default="postgres://root@127.0.0.1:5432/postgres", help="admin URL")
    args = parser.parse_args()
    if args.agents_child:
        _agents_child(args)
        return
    steps, seconds, rounds, idle = (15, 10.0, 1, 200) if args.quick else (60, 30.0, 2, 200)
    results: dict[str, Any] = {"configs": [], "seconds": seconds, "rounds": rounds}
    for name in ("embedded (SQLite, 2 x 8 threads)", "production (PostgreSQL, 3 x 8 threads)"):
        scratch = Path(tempfile.mkdtemp(prefix="slipway-bench-leases-"))
        if name.startswith("embedded"):
            url, processes = f"sqlite:///{scratch / 'slipway.sqlite3'}", 2
        else:
            database = f"slipway_leases_{os.getpid()}"
            with psycopg.connect(args.database, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
                conn.execute(f'CREATE DATABASE "{database}"')
            url, processes = f"{args.database.rsplit('/', 1)[0]}/{database}", 3
        print(f"{name}: seeding {idle} devices", flush=True)
        server = Server(name, url, processes, idle, scratch)
        try:
            overhead = []
            for agents in (1, 20):
                overhead.append(lease_overhead(server, agents, steps, seed=agents))
                print(f"  {agents} agent(s): {overhead[-1]}", flush=True)
            load = idle_load(server, idle, seconds, rounds)
            print(f"  {idle} idle agents: {load}", flush=True)
            results["configs"].append({"name": name, "overhead": overhead, "load": load})
        finally:
            server.stop()
    if not args.no_write:
        write(results)
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    random.seed(0)
    main()
