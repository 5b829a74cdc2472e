"""Upload throughput and web-process memory for a large model, next to a plain `cp`.

Starts the real web server (gunicorn, one sync worker, production settings on SQLite and
local storage) in a scratch data dir, builds a .zip holding model.onnx plus an external
weights file of the requested size, uploads it over HTTP as a streamed multipart body,
samples the gunicorn worker's RSS every 20 ms, and times `cp` of the same file on the same
disk in the same run. Writes the numbers to BENCHMARKS.md (section "Upload") unless
--no-write; --json prints them.

    python bench/upload.py                 # 1 GiB, the issue's figure
    python bench/upload.py --size-mib 256 --no-write --json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
CHUNK = 1024 * 1024


def build_model_zip(workdir: Path, size_bytes: int) -> Path:
    """model.onnx whose one initializer lives in weights.bin (size_bytes of float32), zipped STORED."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    n = size_bytes // 4
    weights = workdir / "weights.bin"
    with open(weights, "wb") as out:
        rng = np.random.default_rng(0)
        left = n
        while left:
            take = min(left, CHUNK)
            out.write(rng.standard_normal(take, dtype=np.float32).tobytes())
            left -= take
    init = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[n])
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", str(n * 4))):
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["W"], ["y"], keepdims=0)],
        "big",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[init],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, workdir / "model.onnx")
    archive = workdir / "big-model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.write(workdir / "model.onnx", "model.onnx")
        zf.write(weights, "weights.bin")
    weights.unlink()
    return archive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)


def multipart_stream(path: Path, boundary: str, fields: dict[str, str]):
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + path.stat().st_size + len(tail)

    class Body:
        """Iterable with a length: requests sends Content-Length and streams the chunks."""

        def __len__(self) -> int:
            return length

        def __iter__(self):
            yield head
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
            yield tail

    return Body(), length


def run(size_bytes: int) -> dict:
    scratch = Path(
        tempfile.mkdtemp(prefix="slipway-bench-upload-", dir=REPO / "var" if (REPO / "var").exists() else None)
    )
    try:
        data_dir = scratch / "data"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.prod",
            # production settings refuse a short key (config.env.envsecret)
            "SLIPWAY_SECRET_KEY": "bench-only-" + os.urandom(32).hex(),
            "SLIPWAY_DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'bench.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "SLIPWAY_SSL_REDIRECT": "false",
            "SLIPWAY_MAX_UPLOAD_BYTES": str(size_bytes * 2),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "platform")]),
        }
        data_dir.mkdir(parents=True)
        manage = [PY, str(REPO / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True)
        subprocess.run([*manage, "bootstrap"], env=env, check=True, capture_output=True)
        token = subprocess.run(
            [*manage, "create_token", "admin", "--scopes", "read,upload"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

        archive = build_model_zip(scratch, size_bytes)
        file_size = archive.stat().st_size

        # Reference: cp of the same file on the same disk, page cache dropped of our copy by fsync.
        t0 = time.perf_counter()
        subprocess.run(["cp", str(archive), str(scratch / "copy.zip")], check=True)
        os.sync()
        cp_seconds = time.perf_counter() - t0
        (scratch / "copy.zip").unlink()

        port = free_port()
        server = subprocess.Popen(
            [
                PY,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--timeout",
                "600",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{url}/healthz", timeout=5).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.2)
            else:
                raise SystemExit("the web server did not answer /healthz within 120 s")
            worker_pid = psutil.Process(server.pid).children()[0].pid
            # Warm the worker (imports, first DB connection) so the baseline is its resting size.
            requests.get(f"{url}/api/v1/models/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            sampler = RssSampler(worker_pid)
            baseline = sampler.peak
            sampler.start()
            boundary = "slipwaybench" + os.urandom(8).hex()
            body, _ = multipart_stream(archive, boundary, {"team": "default"})
            t0 = time.perf_counter()
            response = requests.post(
                f"{url}/api/v1/models/bench-big/versions/",
                data=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
                timeout=900,
            )
            upload_seconds = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join()
            if response.status_code != 201:
                raise SystemExit(f"upload failed: {response.status_code} {response.text[:500]}")
        finally:
            server.terminate()
            server.wait(timeout=30)
        mib = file_size / 2**20
        return {
            "file_mib": round(mib, 1),
            "upload_seconds": round(upload_seconds, 2),
            "upload_mib_per_s": round(mib / upload_seconds, 1),
            "cp_seconds": round(cp_seconds, 2),
            "cp_mib_per_s": round(mib / cp_seconds, 1),
            "throughput_ratio_vs_cp": round(cp_seconds / upload_seconds, 3),
            "web_rss_baseline_mib": round(baseline / 2**20, 1),
            "web_rss_peak_mib": round(sampler.peak / 2**20, 1),
            "web_rss_growth_mib": round((sampler.peak - baseline) / 2**20, 1),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_benchmarks(result: dict) -> None:
    path = REPO / "BENCHMARKS.md"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nNumbers from `bench/`; each is a ratio to a reference run in the same run.\n"
    )
    section = (
        "## Upload\n\n"
        f"`bench/upload.py`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores: a {result['file_mib']:.0f} MiB "
        ".zip (model.onnx + external weights) uploaded over HTTP to gunicorn (1 sync worker), "
        "next to `cp` of the same file on the same disk in the same run.\n\n"
        "| measure | value |\n|---|---|\n"
        f"| upload | {result['upload_seconds']} s ({result['upload_mib_per_s']} MiB/s) |\n"
        f"| cp (reference) | {result['cp_seconds']} s ({result['cp_mib_per_s']} MiB/s) |\n"
        f"| upload throughput / cp throughput | {result['throughput_ratio_vs_cp']} |\n"
        f"| web worker RSS before -> peak | {result['web_rss_baseline_mib']} -> {result['web_rss_peak_mib']} MiB |\n"
        f"| web worker RSS growth during upload | {result['web_rss_growth_mib']} MiB (budget: 64 MiB) |\n\n"
        "The upload is streamed to disk in 1 MiB chunks and hashed on the way, then hard-linked into "
        "content-addressed storage (no second copy). The gap to cp is loopback HTTP, Django's multipart "
        "parsing and SHA-256, all in one Python process.\n"
    )
    pattern = re.compile(r"## Upload\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n"), text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text if text.endswith("\n") else text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.size_mib * 2**20)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")
    if not args.no_write:
        write_benchmarks(result)


if __name__ == "__main__":
    main()
