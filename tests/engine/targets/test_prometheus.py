"""Reading a Prometheus metrics endpoint (workers/engine/targets/prometheus.py) and Triton's
counters from it (triton_metrics.py): the parser's edge cases, an answer as Triton writes it,
and every way fetching it can go wrong, each said in a sentence instead of raised."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from workers.engine.targets.base import TargetError, TargetSettings
from workers.engine.targets.prometheus import parse, scrape
from workers.engine.targets.triton import TritonTarget
from workers.engine.targets.triton_metrics import metrics_endpoint, model_counters, read_metrics

# As Triton 2.x writes /metrics with --metrics-config summary_latencies=true: a model "digits"
# (versions 2 and 3) and the candidate entry Slipway loads beside it during a deploy, failures
# split by reason.
TRITON_METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="digits",version="3"} 1250
nv_inference_request_success{model="digits",version="2"} 98000
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="digits",reason="OTHER",version="3"} 1
nv_inference_request_failure{model="digits",reason="BACKEND",version="3"} 4
nv_inference_request_failure{model="digits",reason="CANCELED",version="3"} 0
nv_inference_request_failure{model="digits",reason="REJECTED",version="3"} 2
nv_inference_request_failure{model="digits",reason="OTHER",version="2"} 0
nv_inference_request_failure{model="digits.candidate",reason="OTHER",version="3"} 0
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="digits",version="3"} 2500
nv_inference_count{model="digits",version="2"} 196000
# HELP nv_inference_exec_count Number of model executions performed (does not include cached requests)
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="digits",version="3"} 700
nv_inference_exec_count{model="digits",version="2"} 60000
# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds\
 (includes cached requests)
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="digits",version="3"} 16875000
nv_inference_request_duration_us{model="digits",version="2"} 1323000000
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds\
 (includes cached requests)
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="digits",version="3"} 7338000
nv_inference_queue_duration_us{model="digits",version="2"} 500000000
# HELP nv_inference_compute_input_duration_us Cumulative compute input duration in microseconds\
 (does not include cached requests)
# TYPE nv_inference_compute_input_duration_us counter
nv_inference_compute_input_duration_us{model="digits",version="3"} 39500
nv_inference_compute_input_duration_us{model="digits",version="2"} 3000000
# HELP nv_inference_compute_infer_duration_us Cumulative compute inference duration in microseconds\
 (does not include cached requests)
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="digits",version="3"} 9393000
nv_inference_compute_infer_duration_us{model="digits",version="2"} 800000000
# HELP nv_inference_compute_output_duration_us Cumulative inference compute output duration in\
 microseconds (does not include cached requests)
# TYPE nv_inference_compute_output_duration_us counter
nv_inference_compute_output_duration_us{model="digits",version="3"} 104000
nv_inference_compute_output_duration_us{model="digits",version="2"} 9000000
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting\
 execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="digits",version="3"} 0
# HELP nv_pinned_memory_pool_total_bytes Pinned memory pool total memory size, in bytes
# TYPE nv_pinned_memory_pool_total_bytes gauge
nv_pinned_memory_pool_total_bytes 268435456
# HELP nv_inference_request_summary_us Summary of inference request duration in microseconds\
 (includes cached requests)
# TYPE nv_inference_request_summary_us summary
nv_inference_request_summary_us_count{model="digits",version="3"} 1250
nv_inference_request_summary_us_sum{model="digits",version="3"} 16875000
nv_inference_request_summary_us{model="digits",version="3",quantile="0.5"} 11200
nv_inference_request_summary_us{model="digits",version="3",quantile="0.9"} 19800
nv_inference_request_summary_us{model="digits",version="3",quantile="0.99"} 41000
nv_gpu_utilization{gpu_uuid="GPU-2b3c"} NaN
"""


def test_triton_counters_are_read_per_model_and_version() -> None:
    exposition = parse(TRITON_METRICS)
    assert exposition.errors == ()
    assert exposition.types["nv_inference_request_summary_us"] == "summary"
    assert exposition.helps["nv_inference_count"].startswith("Number of inferences performed")

    counters = {(c.model_name, c.model_version): c for c in model_counters(exposition)}
    assert set(counters) == {("digits", "2"), ("digits", "3"), ("digits.candidate", "3")}
    live = counters[("digits", "3")]
    assert live.request_success == 1250
    assert live.request_failure == 7  # OTHER + BACKEND + CANCELED + REJECTED
    assert live.inference_count == 2500 and live.execution_count == 700
    assert live.request_duration_us == 16_875_000 and live.queue_duration_us == 7_338_000
    assert (live.compute_input_duration_us, live.compute_infer_duration_us, live.compute_output_duration_us) == (
        39_500,
        9_393_000,
        104_000,
    )
    assert live.request_quantiles_us == ((0.5, 11200.0), (0.9, 19800.0), (0.99, 41000.0))
    assert counters[("digits", "2")].request_quantiles_us == ()
    # the candidate only has a failure counter so far: the rest is unknown, not zero
    assert counters[("digits.candidate", "3")].request_success is None


def test_labels_values_and_timestamps_in_every_form_the_format_allows() -> None:
    text = "\n".join(
        [
            "# a plain comment, ignored",
            "#   TYPE   spaced_total   counter",
            'escaped{path="C:\\\\models\\\\m",say="a \\"quoted\\" word",lines="one\\ntwo"} 1',
            'spaced_total {code="200" , method="GET",} 3 1700000000000',
            "no_labels 4.5e3",
            "not_a_number NaN",
            "up_high +Inf",
            "down_low -Inf",
            "negative_stamp 1 -5",
            "",
        ]
    )
    exposition = parse(text)
    assert exposition.errors == ()
    escaped, spaced, plain, nan, high, low, stamped = exposition.samples
    assert escaped.label("path") == "C:\\models\\m"
    assert escaped.label("say") == 'a "quoted" word'
    assert escaped.label("lines") == "one\ntwo"
    assert spaced.labels == (("code", "200"), ("method", "GET")) and spaced.timestamp_ms == 1_700_000_000_000
    assert exposition.types == {"spaced_total": "counter"}
    assert plain.value == 4500.0
    assert math.isnan(nan.value) and high.value == math.inf and low.value == -math.inf
    assert stamped.timestamp_ms == -5


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("9starts_with_digit 1", "does not start with a metric name"),
        ('m{a="1} 1', "no closing quote"),
        ('m{a="1"', "closed by '}'"),
        ('m{a="1" b="2"} 1', "separated by ','"),
        ('m{a="1",a="2"} 1', "label a is given twice"),
        ("m{a=1} 1", 'needs ="value"'),
        ("m 1_000", "'1_000' is not a number"),
        ("m infinity", "'infinity' is not a number"),
        ("m", "needs a value"),
        ("m 1 2 3", "needs a value and at most a timestamp"),
        ("m 1 1.5", "not a timestamp"),
        ("# TYPE m sometimes", "unknown metric type"),
    ],
)
def test_a_broken_line_is_skipped_and_named_while_the_rest_is_read(line: str, words: str) -> None:
    exposition = parse(f"good_before 1\n{line}\ngood_after 2\n")
    assert [sample.name for sample in exposition.samples] == ["good_before", "good_after"]
    assert len(exposition.errors) == 1 and exposition.errors[0].startswith("line 2: ")
    assert words in exposition.errors[0]


def test_the_number_of_samples_is_bounded() -> None:
    exposition = parse("".join(f'm{{i="{i}"}} {i}\n' for i in range(50)), max_samples=10)
    assert len(exposition.samples) == 10 and "more than 10 samples" in exposition.errors[0]


def test_the_metrics_url_defaults_to_port_8002_of_the_servers_host_and_can_be_off() -> None:
    assert metrics_endpoint("http://triton.internal:8000", "") == "http://triton.internal:8002/metrics"
    assert metrics_endpoint("https://10.0.0.5:443/", "") == "https://10.0.0.5:8002/metrics"
    assert metrics_endpoint("http://[::1]:8000", "") == "http://[::1]:8002/metrics"
    assert metrics_endpoint("http://triton:8000", " OFF ") == ""
    given = "http://metrics.internal:9400/triton"
    assert metrics_endpoint("http://triton:8000", given) == given


@pytest.mark.parametrize("bad", ["ftp://triton:8002/metrics", "triton:8002/metrics", "http://", "http://a b/"])
def test_a_metrics_url_that_is_not_one_is_refused_with_a_sentence(bad: str, tmp_path: Path) -> None:
    with pytest.raises(TargetError) as refused:
        TargetSettings(name="t", url="http://triton:8000", repository=str(tmp_path), metrics_url=bad)
    assert refused.value.code == "invalid_options"
    assert "metrics_url must be an http:// or https:// URL" in refused.value.message
    assert "or off" in refused.value.message


# --- fetching --------------------------------------------------------------------------------


class _Endpoint(BaseHTTPRequestHandler):
    seen_headers: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _Endpoint.seen_headers.append(dict(self.headers.items()))
        if self.path == "/metrics":
            self._answer(200, TRITON_METRICS.encode())
        elif self.path == "/huge":
            self._answer(200, b"m 1\n" * 400_000)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(2)
            self._answer(200, b"m 1\n")
        elif self.path == "/html":
            self._answer(200, b"<html><body>Grafana</body></html>")
        else:
            self._answer(404, b"not here")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_endpoint_is_fetched_and_parsed(endpoint: str) -> None:
    answer = scrape(f"{endpoint}/metrics")
    assert answer.error == "" and answer.exposition is not None
    assert answer.bytes_read == len(TRITON_METRICS.encode())
    assert len(answer.exposition.named("nv_inference_request_success")) == 2


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/missing", "answered HTTP 404"),
        ("/moved", "answered HTTP 302 Found (to http://169.254.169.254/latest/meta-data)"),
        ("/huge", "sent more than 1 MiB; Slipway stopped reading"),
        ("/slow", "did not answer within 0.5 s"),
        ("/html", "is not Prometheus text (line 1"),
    ],
)
def test_a_bad_answer_is_said_in_a_sentence_never_raised(endpoint: str, path: str, words: str) -> None:
    answer = scrape(f"{endpoint}{path}", timeout=0.5, max_bytes=1024 * 1024)
    assert answer.exposition is None
    assert words in answer.error


def test_an_unreachable_endpoint_and_a_wrong_scheme_are_said_too() -> None:
    from tests.triton_server import free_port

    refused = scrape(f"http://127.0.0.1:{free_port()}/metrics", timeout=2)
    assert refused.exposition is None and "can't read the metrics endpoint" in refused.error
    assert "metrics_url to off" in refused.error
    assert "not an http:// or https:// address" in scrape("file:///etc/passwd").error


def test_every_model_is_read_and_a_metrics_url_off_is_said(endpoint: str) -> None:
    reading = read_metrics(f"{endpoint}/metrics", headers={}, timeout=5)
    assert reading.error == "" and {c.model_name for c in reading.models} == {"digits", "digits.candidate"}
    assert "off" in read_metrics("", headers={}, timeout=5).error


def test_the_targets_headers_go_only_to_the_servers_own_host(endpoint: str, tmp_path: Path) -> None:
    port = endpoint.rsplit(":", 1)[1]
    common = {"name": "t", "repository": str(tmp_path), "headers": (("Authorization", "Bearer sk-metrics"),)}
    same = TargetSettings(url="http://127.0.0.1:8000", metrics_url=f"{endpoint}/metrics", **common)  # type: ignore[arg-type]
    other = TargetSettings(url="http://localhost:8000", metrics_url=f"{endpoint}/metrics", **common)  # type: ignore[arg-type]
    _Endpoint.seen_headers.clear()
    assert TritonTarget(same).metrics().models
    assert TritonTarget(other).metrics().models
    assert _Endpoint.seen_headers[0].get("Authorization") == "Bearer sk-metrics"
    assert "Authorization" not in _Endpoint.seen_headers[1]
    assert TritonTarget.metrics_endpoint(same) == f"http://127.0.0.1:{port}/metrics"
