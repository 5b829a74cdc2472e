"""Load: 50 CI clients pushing small models and polling, 20 browser-like readers, on loopback.

Starts the production stack on this machine (gunicorn with production settings on a
throwaway PostgreSQL database, Redis as broker and cache, real Celery workers), gives every
simulated client its own user and API token, and drives it with locust for a fixed time:
first with one worker, then with two, side by side in one run. Reports per endpoint the
request count, errors, p50 and p99, and the pipelines completed per minute, so the second
run shows whether the work scales out. Writes the "### Load" part of the "## Reliability"
section of BENCHMARKS.md unless --no-write.

    python bench/load.py                   # 5 minutes per run, the issue's figure
    python bench/load.py --seconds 60 --no-write
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
import locust  # noqa: F401 - importing it patches the standard library with gevent, before requests
import psutil
import psycopg
import requests
from locust import HttpUser, between, task
from locust.env import Environment

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
CI_CLIENTS = 50
READERS = 20
POLL_SECONDS = 2.0
PIPELINE_WAIT_SECONDS = 180.0


def _mlp_bytes(seed: int) -> bytes:
    """A small ONNX MLP (16 -> 32 -> 4), its weights drawn from `seed`."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


MODELS = [_mlp_bytes(seed) for seed in range(8)]
TOKENS: dict[str, list[str]] = {"ci": [], "reader": []}


def _auth(kind: str, index: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[kind][index % len(TOKENS[kind])]}"}


class CIClient(HttpUser):
    """A CI job: push a model, poll its pipeline until it is done, read its review, repeat."""

    wait_time = between(1, 3)
    _count = 0

    def on_start(self) -> None:
        CIClient._count += 1
        self.headers = _auth("ci", CIClient._count)
        self.model = f"ci-model-{CIClient._count % 10}"

    @task
    def push_and_wait(self) -> None:
        body = random.choice(MODELS)
        with self.client.post(
            f"/api/v1/models/{self.model}/versions/",
            files={"file": ("model.onnx", io.BytesIO(body))},
            data={"team": "load"},
            headers={**self.headers, "Idempotency-Key": os.urandom(12).hex()},
            name="POST /models/{slug}/versions/",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            version = response.json()["id"]
        deadline = time.monotonic() + PIPELINE_WAIT_SECONDS
        while time.monotonic() < deadline:
            gevent.sleep(POLL_SECONDS)
            answer = self.client.get(f"/api/v1/versions/{version}/", headers=self.headers, name="GET /versions/{id}/")
            if answer.ok and answer.json()["status"] in ("ready", "failed"):
                if answer.json()["status"] == "ready":
                    self.client.get(
                        f"/api/v1/versions/{version}/review/", headers=self.headers, name="GET /versions/{id}/review/"
                    )
                return


class BrowserReader(HttpUser):
    """Someone with the browser app open: lists, a version page, the workers, the audit log."""

    wait_time = between(1, 2)
    _count = 0

    def on_start(self) -> None:
        BrowserReader._count += 1
        self.headers = _auth("reader", BrowserReader._count)

    @task(3)
    def models(self) -> None:
        self.client.get("/api/v1/models/?team=load", headers=self.headers, name="GET /models/")

    @task(3)
    def versions(self) -> None:
        answer = self.client.get("/api/v1/versions/?team=load", headers=self.headers, name="GET /versions/")
        results = answer.json().get("results", []) if answer.ok else []
        if results:
            pick = random.choice(results)["id"]
            self.client.get(f"/api/v1/versions/{pick}/", headers=self.headers, name="GET /versions/{id}/ (reader)")

    @task(1)
    def workers(self) -> None:
        self.client.get("/api/v1/workers/", headers=self.headers, name="GET /workers/")

    @task(1)
    def audit(self) -> None:
        self.client.get("/api/v1/audit/?team=load", headers=self.headers, name="GET /audit/")


def _manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [PY, str(REPO / "manage.py"), *args], env=env, cwd=REPO, input=stdin, capture_output=True, text=True, check=True
    ).stdout


SEED = """
from apps.accounts.models import ApiToken, Membership, Team
from django.contrib.auth import get_user_model
User = get_user_model()
team, _ = Team.objects.get_or_create(slug="load", defaults={{"name": "Load"}})
for kind, role, count in (("ci", "data_scientist", {ci}), ("reader", "viewer", {readers})):
    for i in range(count):
        user = User.objects.create_user(f"{{kind}}-{{i}}")
        Membership.objects.create(team=team, user=user, role=role)
        print(kind, ApiToken.issue(user, "load", ["read", "upload"])[1])
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKERS_CPU = "workers (with their sandboxed steps)"


def _tree_cpu_seconds(proc: psutil.Process) -> float:
    """CPU time of a process and all its descendants, the reaped ones included (the sandboxed
    steps a worker starts and waits for land in its children's times)."""
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in tree:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _cpu_by_group(procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds so far of the web server, the workers (with their sandboxes) and this load
    generator (locust runs in this process)."""
    me = psutil.Process().cpu_times()
    return {
        "web (gunicorn)": _tree_cpu_seconds(psutil.Process(procs[0].pid)),
        WORKERS_CPU: sum(_tree_cpu_seconds(psutil.Process(p.pid)) for p in procs[1:]),
        "load generator (locust)": me.user + me.system,
    }


def _one_run(workers: int, seconds: float, admin_url: str, redis_db: int) -> dict[str, Any]:
    database = f"slipway_load_{os.getpid()}_{workers}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    scratch = Path(tempfile.mkdtemp(prefix="slipway-bench-load-"))
    base = admin_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.prod",
        "SLIPWAY_SECRET_KEY": "bench-only-" + os.urandom(32).hex(),  # production settings refuse short keys
        "SLIPWAY_DATA_DIR": str(scratch),
        "DATABASE_URL": f"{base}/{database}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "SLIPWAY_CACHE_URL": f"redis://127.0.0.1:6379/{redis_db + 1}",
        "SLIPWAY_SSL_REDIRECT": "false",
        "SLIPWAY_LOG_LEVEL": "WARNING",
        "SLIPWAY_BENCHMARK_MAX_SECONDS_PER_POINT": "0.3",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "platform")]),
    }
    redis = __import__("redis").Redis.from_url(env["CELERY_BROKER_URL"])
    redis.flushdb()
    _manage(env, "migrate", "--noinput")
    TOKENS["ci"].clear()
    TOKENS["reader"].clear()
    for line in _manage(env, "shell", stdin=SEED.format(ci=CI_CLIENTS, readers=READERS)).splitlines():
        kind, _, value = line.partition(" ")
        if kind in TOKENS:
            TOKENS[kind].append(value)
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                # as docker-compose.yml runs it (threads, and a keep-alive longer than 2 s polling)
                PY,
                "-m",
                "gunicorn",
                "config.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "--workers",
                "3",
                "--threads",
                "8",
                "--keep-alive",
                "65",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(scratch / "web.log", "w"),  # noqa: SIM115 - lives as long as the process
        )
    ]
    for n in range(workers):
        procs.append(
            subprocess.Popen(
                [
                    PY,
                    "manage.py",
                    "run_worker",
                    "--queues",
                    "cpu,default",
                    "--",
                    "-n",
                    f"load{n}@%h",
                    "--concurrency=1",
                ],
                env=env,
                cwd=REPO,
                stdout=open(scratch / f"worker{n}.log", "w"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit(f"gunicorn did not start: {(scratch / 'web.log').read_text()[-2000:]}")
        time.sleep(8)  # the workers connect and report in
        environment = Environment(user_classes=[CIClient, BrowserReader], host=url)
        runner = environment.create_local_runner()
        CIClient._count = BrowserReader._count = 0
        CIClient.weight, BrowserReader.weight = CI_CLIENTS, READERS
        started = time.time()
        cpu_before, groups_before = psutil.cpu_times(), _cpu_by_group(procs)
        runner.start(CI_CLIENTS + READERS, spawn_rate=10)
        gevent.sleep(seconds)
        cpu_after, groups_after = psutil.cpu_times(), _cpu_by_group(procs)
        runner.quit()
        elapsed = time.time() - started
        machine = sum(cpu_after) - sum(cpu_before)
        busy = machine - (cpu_after.idle - cpu_before.idle)
        cpu_busy = busy / machine
        cpu_seconds = {group: groups_after[group] - groups_before[group] for group in groups_after}
        cpu_seconds["other (PostgreSQL, Redis, system)"] = busy - sum(cpu_seconds.values())
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            done = conn.execute(
                "SELECT status, count(*) FROM registry_modelversion WHERE status IN ('ready','failed') GROUP BY status"
            ).fetchall()
            submitted = conn.execute("SELECT count(*) FROM registry_modelversion").fetchone()[0]
            jobs_done = conn.execute("SELECT count(*) FROM jobs_job WHERE status = 'succeeded'").fetchone()[0]
            by_worker = conn.execute(
                "SELECT worker_host, count(*) FROM jobs_job WHERE status = 'succeeded' GROUP BY worker_host"
            ).fetchall()
        finished = {status: count for status, count in done}
        endpoints = []
        for entry in sorted(environment.stats.entries.values(), key=lambda e: e.name):
            endpoints.append(
                {
                    "endpoint": entry.name,  # the names carry the method
                    "requests": entry.num_requests,
                    "errors": entry.num_failures,
                    "p50_ms": entry.get_response_time_percentile(0.5),
                    "p99_ms": entry.get_response_time_percentile(0.99),
                }
            )
        total = environment.stats.total
        return {
            "workers": workers,
            "seconds": round(elapsed),
            "requests": total.num_requests,
            "errors": total.num_failures,
            "errors_detail": [f"{e.name}: {e.error}"[:200] for e in environment.stats.errors.values()],
            "requests_per_second": round(total.num_requests / elapsed, 1),
            "versions_submitted": submitted,
            "pipelines_finished": sum(finished.values()),
            "pipelines_failed": finished.get("failed", 0),
            "pipelines_per_minute": round(sum(finished.values()) / (elapsed / 60), 2),
            "jobs_succeeded": jobs_done,
            "jobs_per_minute": round(jobs_done / (elapsed / 60), 1),
            # which worker did them: each worker is named load<N>@host
            "jobs_by_worker": {host or "?": count for host, count in sorted(by_worker)},
            "cpu_busy": round(cpu_busy, 3),
            "cpu_share": {group: round(value / busy, 3) for group, value in cpu_seconds.items()},
            "endpoints": endpoints,
            "load_average": os.getloadavg(),
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.flushdb()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if not os.environ.get("SLIPWAY_BENCH_KEEP"):
            shutil.rmtree(scratch, ignore_errors=True)


def _ratio(new: dict[str, Any], old: dict[str, Any], key: str) -> float:
    return new[key] / old[key] if old[key] else float("nan")


def _workers(run: dict[str, Any]) -> str:
    return f"{run['workers']} worker{'s' if run['workers'] != 1 else ''}"


def _worker_cores(run: dict[str, Any]) -> float:
    """How many of the machine's cores the workers (with their sandboxed steps) kept busy."""
    return run["cpu_busy"] * run["cpu_share"][WORKERS_CPU] * (os.cpu_count() or 1)


def _scale_out_reading(runs: list[dict[str, Any]]) -> str:
    """What the worker columns say, in numbers: jobs per minute follow the CPU the workers got."""
    first, last = runs[0], runs[-1]
    return (
        f"Where the time went: with {_workers(first)} the machine was already {first['cpu_busy']:.0%} busy and "
        f"the workers used {_worker_cores(first):.2f} cores; with {_workers(last)} it was "
        f"{last['cpu_busy']:.0%} busy and the workers used {_worker_cores(last):.2f} cores "
        f"({_worker_cores(last) / _worker_cores(first):.2f}x), for {_ratio(last, first, 'jobs_per_minute'):.2f}x "
        "the jobs per minute. Jobs per minute for each core the workers used: "
        + ", ".join(f"{run['jobs_per_minute'] / _worker_cores(run):.1f} with {_workers(run)}" for run in runs)
        + ": the work grows with the CPU the workers get, and on this 2-core machine the web server under "
        "this load holds most of what a second worker would need."
    )


def write_benchmarks(runs: list[dict[str, Any]]) -> None:
    """Write the "### Load" part of "## Reliability": one column per run, the first the reference."""
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    first = runs[0]
    counts = " and then with ".join(f"{run['workers']}" for run in runs)

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(str(cell(run)) for run in runs) + " |"

    lines = [
        "### Load",
        "",
        f"`bench/load.py`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, loopback only: {CI_CLIENTS} CI clients "
        f"(each its own user and token: push a small ONNX MLP, poll every {POLL_SECONDS:.0f} s until the pipeline "
        f"is done, read the review, repeat) and {READERS} browser-like readers (lists, version pages, workers, "
        f"audit log), for {first['seconds']} s against gunicorn (3 x 8 threads) with production settings on "
        f"PostgreSQL and Redis; the same load with {counts} Celery worker processes (one job at a time each), "
        f"in one run. Web, workers, database and the load generator share the {os.cpu_count()} cores.",
        "",
        "| | " + " | ".join(_workers(run) for run in runs) + " |",
        "|---|" + "---|" * len(runs),
        row("requests (errors)", lambda r: f"{r['requests']} ({r['errors']})"),
        row("requests per second", lambda r: r["requests_per_second"]),
        row("versions pushed", lambda r: r["versions_submitted"]),
        row("pipelines finished (failed)", lambda r: f"{r['pipelines_finished']} ({r['pipelines_failed']})"),
        row("pipeline steps (jobs) completed per minute", lambda r: r["jobs_per_minute"]),
        row("jobs done by each worker", lambda r: ", ".join(str(n) for n in r["jobs_by_worker"].values())),
        row(f"CPU busy (all {os.cpu_count()} cores)", lambda r: f"{r['cpu_busy']:.0%}"),
        *[
            row(f"share of the busy CPU: {group}", lambda r, g=group: f"{r['cpu_share'].get(g, 0):.0%}")
            for group in first["cpu_share"]
        ],
        row("pipelines finished per minute", lambda r: r["pipelines_per_minute"]),
        row(
            f"jobs per minute / {_workers(first)}'s",
            lambda r: f"{_ratio(r, first, 'jobs_per_minute'):.2f}",
        ),
        row(
            f"pipelines per minute / {_workers(first)}'s",
            lambda r: f"{_ratio(r, first, 'pipelines_per_minute'):.2f}",
        ),
        "",
        "| endpoint | " + " | ".join(f"{_workers(run)}: requests, errors, p50 / p99 ms" for run in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    by_endpoint = [{e["endpoint"]: e for e in run["endpoints"]} for run in runs]
    for entry in first["endpoints"]:
        cells = []
        for endpoints in by_endpoint:
            other = endpoints.get(entry["endpoint"])
            cells.append(
                f"{other['requests']}, {other['errors']}, {other['p50_ms']:.0f} / {other['p99_ms']:.0f}"
                if other
                else "-"
            )
        lines.append(f"| {entry['endpoint']} | " + " | ".join(cells) + " |")
    details = [detail for run in runs for detail in run["errors_detail"]]
    if details:
        lines += ["", "Errors: " + "; ".join(details)]
    lines += ["", _scale_out_reading(runs)]
    section = "\n".join(lines)
    if "## Reliability" not in text:
        text = text.rstrip("\n") + "\n\n## Reliability\n"
    pattern = re.compile(r"### Load\n.*?(?=\n### |\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:  # at the end of the Reliability section
        start = text.index("## Reliability")
        following = text.find("\n## ", start + 1)
        at = len(text) if following == -1 else following
        text = text[:at].rstrip("\n") + "\n\n" + section + "\n" + text[at:]
    path.write_text(re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="length of each run (default 300)")
    parser.add_argument("--database", default="postgres://root@127.0.0.1:5432/postgres", help="an admin connection")
    parser.add_argument("--redis-db", type=int, default=6, help="Redis databases N (broker) and N+1 (cache) are used")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [_one_run(workers, args.seconds, args.database, args.redis_db) for workers in args.workers]
    if args.json:
        print(json.dumps(runs, indent=2))
    else:
        for run in runs:
            print(
                f"{run['workers']} worker(s): {run['requests']} requests, {run['errors']} errors, "
                f"{run['jobs_per_minute']} jobs/min, {run['pipelines_per_minute']} pipelines/min"
            )
    if not args.no_write:
        write_benchmarks(runs)


if __name__ == "__main__":
    main()
