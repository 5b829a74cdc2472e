"""The Triton Inference Server driver: push a version, load it, smoke-test it, switch traffic to it.
It is over 600 lines because a serving-target driver is one module by the plug-in contract
(docs/adr/0012: a kind is its driver module, one line in `targets.registry` and its tests), and
this one holds Triton's whole deploy, rollback and retire sequence, the calls to the server,
and the smoke test.

The server must run with `--model-control-mode=explicit`, so that it loads what Slipway
asks for and nothing else, over the model-repository HTTP API
(POST /v2/repository/models/<name>/load). Inference uses the KServe v2 protocol through
`tritonclient.http`.

How a new version replaces the live one (`deploy`) without a request ever reaching an
untested version:

1. candidate: the version is written as its own entry, "<name>.candidate", loaded there and
   smoke-tested (its outputs on the reference inputs compared with the reference outputs,
   by parity's `compare_variant`). Requests for "<name>" still go to the live version:
   Triton answers an unversioned request with the highest loaded version, so loading the
   new version beside the old one under the same name would hand it traffic before its
   test.
2. switch: the version directory moves into "<name>", whose config then serves only the new
   version, and "<name>" is loaded again. Triton loads the new version while the old one
   keeps answering, then unloads the old one. The instances that now serve are
   smoke-tested again.
3. on any failure the previous config is put back (and loaded again if the switch had
   started), the new version's directory is removed, and `TargetError` says what failed,
   with Triton's own words in `detail`.

The old version's directory stays in the repository, so `rollback` can serve it again;
`retire` removes a version that no longer serves. Slipway touches only what it wrote: a
model of the same name that someone else put in the repository is refused ("foreign_entry"),
and removals leave other files in place, with a sentence in the steps (`TritonRepository`).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from workers.engine.parity import compare_variant
from workers.engine.targets.base import (
    SERVING_DTYPES,
    DeploymentSpec,
    DeployOutcome,
    OptionSpec,
    PushResult,
    ServingMetrics,
    SmokeResult,
    TargetError,
    TargetHealth,
    TargetSettings,
    describe_reasons,
    described,
)
from workers.engine.targets.triton_config import TritonModelConfig
from workers.engine.targets.triton_metrics import metrics_endpoint, read_metrics
from workers.engine.targets.triton_repository import (
    CANDIDATE_SUFFIX,
    PreparedVersion,
    TritonRepository,
    prepare_version,
)
from workers.engine.targets.triton_stores import RepositoryStore, open_store

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")

_POLL_SECONDS = 0.1
# The S3 secrets a target may hold: credentials, never options.
S3_CREDENTIAL_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_MAX_DETAIL_CHARS = 4000


class TritonTarget:
    """One Triton server and the model repository it serves from (a `TargetDriver`)."""

    kind: ClassVar[str] = "triton"
    label: ClassVar[str] = "Triton Inference Server"
    option_specs: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec(
            "python_paths",
            "path_list",
            "sys.path entries the python backend needs on the server (absolute directories); "
            "empty: the deploying worker's own",
            example="/opt/slipway",
        ),
        OptionSpec(
            "repository_options",
            "text_map",
            "S3 client settings for an s3:// repository (endpoint_url, region_name, ...)",
            secret_keys=S3_CREDENTIAL_KEYS,
            example="endpoint_url: http://minio.internal:9000",
        ),
        OptionSpec(
            "request_timeout_seconds",
            "number",
            "seconds to wait for one request to the server",
            default=TargetSettings.request_timeout_seconds,
            minimum=1,
            maximum=3600,
        ),
        OptionSpec(
            "load_timeout_seconds",
            "number",
            "seconds to wait for a model to load",
            default=TargetSettings.load_timeout_seconds,
            minimum=1,
            maximum=3600,
        ),
        # Text, not "url": "off" must pass too; TargetSettings checks that it is a URL otherwise.
        OptionSpec(
            "metrics_url",
            "string",
            "where the server's Prometheus metrics are read from (an http:// or https:// URL), or off; "
            "empty: port 8002 of the server's host, /metrics (Triton's default)",
            example="http://triton.internal:8002/metrics",
        ),
    )
    credential_specs: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec(
            "headers",
            "headers",
            "HTTP headers sent with every request to the server (an object), e.g. Authorization",
            example="Authorization: Bearer ...",
        ),
        OptionSpec("aws_access_key_id", "string", "S3 access key for an s3:// repository"),
        OptionSpec("aws_secret_access_key", "string", "S3 secret key for an s3:// repository"),
        OptionSpec("aws_session_token", "string", "S3 session token for an s3:// repository"),
    )
    option_keys: ClassVar[dict[str, str]] = described(option_specs)
    credential_keys: ClassVar[dict[str, str]] = described(credential_specs)

    def __init__(self, settings: TargetSettings, *, store: RepositoryStore | None = None) -> None:
        self.settings = settings
        self.repository = TritonRepository(store or open_store(settings))

    # --- the server ----------------------------------------------------------------------

    @staticmethod
    def metrics_endpoint(settings: TargetSettings) -> str:
        """Where the server's metrics are read ("" when its metrics_url is off)."""
        return metrics_endpoint(settings.url, settings.metrics_url)

    def metrics(self) -> ServingMetrics:
        """The server's counters per model version, from its Prometheus endpoint; never raises.

        The target's headers go along only when the endpoint is on the server's own host, so a
        metrics_url elsewhere never receives its credentials.
        """
        url = self.metrics_endpoint(self.settings)
        same_host = urlsplit(url).hostname == urlsplit(self.settings.url.strip()).hostname
        headers = self._headers if url and same_host else {}
        return read_metrics(url, headers=headers, timeout=min(self.settings.request_timeout_seconds, 30.0))

    def health(self) -> TargetHealth:
        """Whether the server is live and ready (/v2/health/*) and what it is (/v2); never raises.

        When it is live but not ready, the repository index says which models failed to load.
        """
        try:
            live = self._call("checking that it is live", lambda client: client.is_server_live(headers=self._headers))
            ready = self._call(
                "checking that it is ready", lambda client: client.is_server_ready(headers=self._headers)
            )
            metadata = self._call("reading its metadata", lambda client: client.get_server_metadata(self._headers))
            failed = () if ready or not live else self._failed_models()
        except TargetError as exc:
            return TargetHealth(reachable=exc.code != "target_unreachable", live=False, ready=False, error=exc.message)
        error = ""
        if not live:
            error = f"The Triton server at {self.settings.url} answers but is not live; see its log."
        elif not ready and failed:
            error = (
                f"The Triton server at {self.settings.url} is live but reports not ready, because these models "
                f"failed to load: {'; '.join(failed)}. Under --strict-readiness (Triton's default) it stays so until "
                "each loads; Slipway deploys still work."
            )
        elif not ready:
            error = (
                f"The Triton server at {self.settings.url} is live but reports not ready. It may still be "
                "starting; or, under --strict-readiness (Triton's default), a model whose load failed earlier "
                "keeps it so, even once removed, until a model of that name loads. Slipway deploys still work."
            )
        return TargetHealth(
            reachable=True,
            live=bool(live),
            ready=bool(ready),
            server_name=str(metadata.get("name", "")),
            server_version=str(metadata.get("version", "")),
            extensions=tuple(str(item) for item in metadata.get("extensions", ())),
            failed_models=failed,
            error=error,
        )

    def _failed_models(self) -> tuple[str, ...]:
        index = self._call(
            "reading its model repository index", lambda client: client.get_model_repository_index(self._headers)
        )
        return tuple(
            f"{item.get('name')}: {_first_line(str(item.get('reason', '')))}"
            for item in index
            if item.get("state") == "UNAVAILABLE" and item.get("reason") not in (None, "", "unloaded")
        )

    def live_versions(self, model_name: str) -> tuple[int, ...]:
        """The versions of `model_name` the server has loaded and ready, from its repository index."""
        index = self._call(
            "reading its model repository index", lambda client: client.get_model_repository_index(self._headers)
        )
        ready = [item for item in index if item.get("name") == model_name and item.get("state") == "READY"]
        return tuple(sorted(int(item["version"]) for item in ready if str(item.get("version")).isdigit()))

    def load(self, entry: str) -> None:
        """Ask the server to (re)load `entry` from the repository, as its config says.

        Raises TargetError("load_rejected") with Triton's error text when the server refuses
        the config or the files.
        """
        try:
            self._call(
                f"loading '{entry}'",
                lambda client: client.load_model(entry, headers=self._headers),
                timeout=self.settings.load_timeout_seconds,
            )
        except TargetError as exc:
            if exc.code != "server_error":
                raise
            reason = _first_line(exc.detail)
            hint = (
                "Start the server with --model-control-mode=explicit so that Slipway can load models."
                if "polling is enabled" in exc.detail or "not allowed" in exc.detail
                else "Fix the model's configuration or files and deploy again."
            )
            raise TargetError(
                "load_rejected",
                f"The Triton server '{self.settings.name}' refused to load '{entry}': {reason} {hint}",
                detail=exc.detail,
            ) from None

    def wait_ready(self, entry: str, version: int) -> None:
        """Wait until the version is ready, up to the load timeout; TargetError("not_ready") after."""
        deadline = time.monotonic() + self.settings.load_timeout_seconds
        while True:
            ready = self._call(
                f"checking that '{entry}' version {version} is ready",
                lambda client: client.is_model_ready(entry, str(version), headers=self._headers),
            )
            if ready:
                return
            if time.monotonic() > deadline:
                raise TargetError(
                    "not_ready",
                    f"Version {version} of '{entry}' was loaded but is still not ready after "
                    f"{self.settings.load_timeout_seconds:g} s; see the Triton server's log.",
                    transient=True,
                )
            time.sleep(_POLL_SECONDS)

    def unload(self, entry: str) -> None:
        """Ask the server to unload every version of `entry`."""
        self._call(f"unloading '{entry}'", lambda client: client.unload_model(entry, headers=self._headers))

    def smoke(self, spec: DeploymentSpec, entry: str | None = None) -> SmokeResult:
        """Run the spec's reference inputs through the loaded version and compare the outputs.

        Outputs are compared with `spec.reference_outputs` under `spec.tolerance` by parity's
        `compare_variant`. Without reference inputs, one feed is generated from the
        signature (free dims as 1) and only the outputs' presence is checked. A request the
        server fails makes a failed result with its text in `error`; only an unreachable
        server raises.
        """
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException

        entry = entry or spec.model_name
        feeds = list(spec.reference_inputs) or [_generated_feed(spec)]
        latencies: list[float] = []
        answers: list[dict[str, np.ndarray]] = []
        requested = [httpclient.InferRequestedOutput(tensor.name, binary_data=True) for tensor in spec.outputs]
        with self._client() as client:
            for feed in feeds:
                try:
                    inputs = [_infer_input(httpclient, tensor.name, tensor.dtype, feed) for tensor in spec.inputs]
                except KeyError as exc:
                    reason = f"The reference inputs have no array for input '{exc.args[0]}'."
                    return SmokeResult(entry, spec.version, False, False, len(feeds), (), (reason,), error=reason)
                started = time.perf_counter()
                try:
                    result = client.infer(
                        entry, inputs, model_version=str(spec.version), outputs=requested, headers=self._headers
                    )
                except InferenceServerException as exc:
                    text = _server_text(exc)
                    reason = f"The server failed the smoke inference on version {spec.version}: {_first_line(text)}"
                    return SmokeResult(
                        entry, spec.version, False, False, len(feeds), tuple(latencies), (reason,), error=text
                    )
                except OSError as exc:
                    raise self._unreachable("running the smoke inference", exc) from exc
                latencies.append((time.perf_counter() - started) * 1000)
                answers.append({tensor.name: _output(result, tensor.name) for tensor in spec.outputs})
        if not spec.reference_outputs:
            missing = sorted({name for answer in answers for name, value in answer.items() if value is None})
            reasons = tuple(f"Output '{name}' is missing from the server's answer." for name in missing)
            return SmokeResult(entry, spec.version, not reasons, False, len(feeds), tuple(latencies), reasons)
        parity = compare_variant(list(spec.reference_outputs), answers, spec.tolerance)
        return SmokeResult(
            entry, spec.version, parity.passed, True, len(feeds), tuple(latencies), parity.reasons, parity=parity
        )

    # --- the switch-over -----------------------------------------------------------------

    def deploy(self, spec: DeploymentSpec, previous_version: int | None = None) -> DeployOutcome:
        """Make `spec.version` the live version of `spec.model_name`, replacing `previous_version`.

        `previous_version` is the version serving now, as the platform recorded it (None on
        the first deploy); it keeps serving until the new version passed its smoke test.
        Calling again with the same spec after an interruption is safe: an identical version
        already in the repository is reused. Raises TargetError: "target_unreachable" and
        "not_live" / "not_ready" (transient), "repository_not_writable", "version_exists",
        "version_missing" (the previous version is not in the repository), "load_rejected",
        "smoke_failed" / "smoke_mismatch" (with `smoke`), "unsupported_format".
        """
        started = time.monotonic()
        steps: list[str] = []
        name, version = spec.model_name, spec.version
        if previous_version == version:
            raise TargetError(
                "invalid_spec", f"Version {version} is already the previous version; deploy under a new number."
            )
        prepared = prepare_version(spec, self.settings)
        self._require_live()
        with self.repository.store.lock(name):
            self.repository.check_not_foreign(name)
            if previous_version is not None:
                self.repository.version_config(name, previous_version)  # it must be there to fall back on
            old_config = self.repository.config_text(name)
            candidate_smoke = None
            existing = self.repository.manifest(name, version)
            location = self.repository.store.uri(f"{name}/{version}")
            if existing is not None and existing.get("files") == prepared.hashes:
                # A retried deploy that got as far as moving the version in: switch to it.
                files = tuple(sorted(prepared.files))
                push = PushResult(name, version, location, files, 0, prepared.config.render([version]), reused=True)
                steps.append(f"found version {version} already in the repository ({location})")
            elif self.repository.store.exists(f"{name}/{version}"):
                raise TargetError(
                    "version_exists",
                    f"Version {version} of '{name}' is already in the model repository with other files "
                    f"({location}); deploy under a new version number.",
                )
            else:
                push, candidate_smoke = self._try_candidate(spec, prepared, previous_version, steps)
            self._switch(spec, prepared.config, old_config, previous_version, steps)
            live_smoke = self.smoke(spec)
            if not live_smoke.passed:
                restored = self._restore(name, version, old_config, previous_version, steps)
                raise self._smoke_error(live_smoke, f"This was the check after the switch. {restored}")
            steps.append(f"smoke-tested the live version {version}: {_smoke_summary(live_smoke)}")
        return DeployOutcome(
            model_name=name,
            live_version=version,
            previous_version=previous_version,
            push=push,
            candidate_smoke=candidate_smoke,
            live_smoke=live_smoke,
            seconds=time.monotonic() - started,
            steps=tuple(steps),
        )

    def rollback(
        self, model_name: str, to_version: int, current_version: int | None, spec: DeploymentSpec | None = None
    ) -> DeployOutcome:
        """Serve `to_version` again (its directory must still be in the repository) instead of
        `current_version`, with the config it was deployed with.

        With `spec` (the old version's spec, reference included) the restored version is
        smoke-tested, and a failure puts `current_version` back. Raises TargetError like
        `deploy`, and "version_missing" when `to_version` was retired.
        """
        started = time.monotonic()
        steps: list[str] = []
        self._require_live()
        with self.repository.store.lock(model_name):
            self.repository.check_not_foreign(model_name)
            config = self.repository.version_config(model_name, to_version)
            old_config = self.repository.config_text(model_name)
            self.repository.serve(model_name, config, [to_version])
            steps.append(f"set '{model_name}' to serve version {to_version}")
            try:
                self.load(model_name)
                self.wait_ready(model_name, to_version)
            except TargetError:
                self._put_back(model_name, old_config, current_version, steps)
                raise
            steps.append(f"loaded version {to_version}")
            smoke = None
            if spec is not None:
                smoke = self.smoke(replace(spec, model_name=model_name, version=to_version))
                if not smoke.passed:
                    self._put_back(model_name, old_config, current_version, steps)
                    raise self._smoke_error(smoke, "The version before the rollback serves again.")
                steps.append(f"smoke-tested version {to_version}: {_smoke_summary(smoke)}")
        return DeployOutcome(
            model_name, to_version, current_version, None, None, smoke, time.monotonic() - started, tuple(steps)
        )

    def served_versions(self, model_name: str) -> tuple[int, ...]:
        """The version directories of the model's entry (the live one and the one a rollback restores)."""
        return self.repository.versions(model_name)

    def retire(self, model_name: str, version: int) -> tuple[str, ...]:
        """Remove a version that no longer serves from the repository (it can't be rolled back to after).

        Only what Slipway wrote goes; returns sentences on anything left in place. Raises
        TargetError("version_live") when the server still serves it.
        """
        with self.repository.store.lock(model_name):
            if version in self.live_versions(model_name):
                raise TargetError(
                    "version_live",
                    f"Version {version} of '{model_name}' is still serving; deploy or roll back to another "
                    "version before retiring it.",
                )
            return self.repository.remove_version(model_name, version)

    def remove_model(self, model_name: str) -> tuple[str, ...]:
        """Unload every version of the model and remove its entry (and any leftover candidate).

        An entry Slipway did not write is neither unloaded nor removed; returns sentences on
        what was left in place.
        """
        self._require_live()
        notes: list[str] = []
        with self.repository.store.lock(model_name):
            for entry in (model_name + CANDIDATE_SUFFIX, model_name):
                notes.extend(self._discard(entry, unload_errors=True))
        return tuple(notes)

    # --- the steps -----------------------------------------------------------------------

    def _try_candidate(
        self, spec: DeploymentSpec, prepared: PreparedVersion, previous_version: int | None, steps: list[str]
    ) -> tuple[PushResult, SmokeResult]:
        """Load and smoke-test the version as "<name>.candidate", then move it into "<name>"."""
        name, version = spec.model_name, spec.version
        candidate = name + CANDIDATE_SUFFIX
        steps.extend(self._discard(candidate))  # a leftover of an interrupted deploy
        push = self.repository.push(prepared, candidate, [version])
        steps.append(f"wrote version {version} as '{candidate}' ({push.bytes_written} bytes, {push.location})")
        try:
            self.load(candidate)
            self.wait_ready(candidate, version)
            steps.append(f"loaded '{candidate}'")
            smoke = self.smoke(spec, entry=candidate)
        except BaseException:
            self._discard(candidate)
            raise
        if not smoke.passed:
            self._discard(candidate)
            kept = f"version {previous_version} keeps serving" if previous_version is not None else "nothing changed"
            raise self._smoke_error(smoke, f"No traffic reached it and it was removed; {kept}.")
        steps.append(f"smoke-tested '{candidate}': {_smoke_summary(smoke)}")
        # Free its memory (a GPU's, say) before the live entry loads the same model.
        self.unload(candidate)
        self.repository.move_version(candidate, name, version)
        steps.extend(self.repository.remove_entry(candidate))
        steps.append(f"moved version {version} into '{name}'")
        return replace(push, model_name=name, location=self.repository.store.uri(f"{name}/{version}")), smoke

    def _switch(
        self,
        spec: DeploymentSpec,
        config: TritonModelConfig,
        old_config: str | None,
        previous_version: int | None,
        steps: list[str],
    ) -> None:
        """Serve only the new version; Triton loads it while the old one still answers."""
        name, version = spec.model_name, spec.version
        self.repository.serve(name, config, [version])
        steps.append(f"set '{name}' to serve version {version}")
        try:
            self.load(name)
            self.wait_ready(name, version)
        except TargetError as exc:
            restored = self._restore(name, version, old_config, previous_version, steps)
            message = f"{exc.message} {restored}"
            raise TargetError(exc.code, message, detail=exc.detail, transient=exc.transient) from exc
        steps.append(f"loaded version {version} of '{name}'; the previous version is unloaded")

    def _restore(
        self, name: str, version: int, old_config: str | None, previous_version: int | None, steps: list[str]
    ) -> str:
        """Put the previous version back after a failed switch; a sentence saying how it went."""
        try:
            self._put_back(name, old_config, previous_version, steps)
            steps.extend(self.repository.remove_version(name, version))
            if old_config is None and not self.repository.versions(name):
                steps.extend(self.repository.remove_entry(name))
            steps.append(f"removed version {version}")
        except TargetError as exc:
            return f"Putting the previous state back failed as well: {exc.message}"
        if previous_version is None:
            return "Nothing serves under this name now, as before the deploy."
        return f"Version {previous_version} serves again."

    def _put_back(self, name: str, old_config: str | None, previous_version: int | None, steps: list[str]) -> None:
        self.repository.restore_config(name, old_config)
        if old_config is not None and previous_version is not None:
            self.load(name)
            self.wait_ready(name, previous_version)
            steps.append(f"restored the previous config; version {previous_version} serves")
        else:
            self.unload(name)
            steps.append(f"unloaded '{name}'")

    def _discard(self, entry: str, *, unload_errors: bool = False) -> tuple[str, ...]:
        """Unload and remove an entry Slipway wrote, whatever state it is in; returns sentences
        on what was left in place (an entry, or files, Slipway did not write)."""
        if self.repository.store.exists(entry) and not self.repository.owns(entry):
            return (f"Left '{entry}' ({self.repository.store.uri(entry)}) in place: Slipway did not write it.",)
        if unload_errors:
            self.unload(entry)
        else:
            with contextlib.suppress(TargetError):
                self.unload(entry)
        return self.repository.remove_entry(entry)

    def _smoke_error(self, smoke: SmokeResult, outcome: str) -> TargetError:
        """The error for a failed smoke test; `outcome` is a sentence on what state was left."""
        what = f"version {smoke.version} of '{smoke.model_name.removesuffix(CANDIDATE_SUFFIX)}'"
        if smoke.error:
            return TargetError(
                "smoke_failed",
                f"The smoke inference on {what} failed. {describe_reasons(smoke.reasons)} {outcome}",
                detail=smoke.error,
                smoke=smoke,
            )
        return TargetError(
            "smoke_mismatch",
            f"The server's answers for {what} don't match the reference outputs: {describe_reasons(smoke.reasons)} "
            f"{outcome}",
            smoke=smoke,
        )

    def _require_live(self) -> None:
        # Live, not ready: a strict-readiness server is "not ready" after any failed load,
        # which must not block the deploy that fixes it.
        health = self.health()
        if not health.live:
            code = "target_unreachable" if not health.reachable else "not_live"
            raise TargetError(code, health.error, transient=True)

    # --- HTTP ----------------------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return dict(self.settings.headers)

    @contextlib.contextmanager
    def _client(self, timeout: float | None = None) -> Iterator[Any]:
        import tritonclient.http as httpclient

        url = urlsplit(self.settings.url.strip())
        client = httpclient.InferenceServerClient(
            url.netloc,
            ssl=url.scheme == "https",
            connection_timeout=min(self.settings.request_timeout_seconds, 30.0),
            network_timeout=timeout or self.settings.request_timeout_seconds,
        )
        try:
            yield client
        finally:
            client.close()

    def _call(self, action: str, call: Callable[[Any], T], *, timeout: float | None = None) -> T:
        """Run one client call; the server's refusals become TargetError("server_error", detail=its text)."""
        from tritonclient.utils import InferenceServerException

        try:
            with self._client(timeout) as client:
                return call(client)
        except InferenceServerException as exc:
            text = _server_text(exc)
            status = str(exc.status() or "")
            raise TargetError(
                "server_error",
                f"The Triton server '{self.settings.name}' refused {action}: {_first_line(text)}",
                detail=text,
                transient=status.startswith("5") and "load failed" not in text,
            ) from None
        except OSError as exc:
            raise self._unreachable(action, exc) from exc

    def _unreachable(self, action: str, exc: OSError) -> TargetError:
        reason = "it did not answer in time" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return TargetError(
            "target_unreachable",
            f"Slipway can't reach the Triton server '{self.settings.name}' at {self.settings.url} while "
            f"{action} ({reason}). Check that the server is running and that this worker can reach that "
            "address; Slipway will try again.",
            detail=str(exc),
            transient=True,
        )


# --- tensors -----------------------------------------------------------------------------


def _infer_input(httpclient: Any, name: str, dtype: str, feed: Mapping[str, Any]) -> Any:
    import numpy as np

    wire = SERVING_DTYPES[dtype]
    value = feed[name]
    array = np.asarray(value, dtype=object) if wire == "BYTES" else np.asarray(value)
    if wire not in ("BYTES", "BF16"):
        array = array.astype(np.dtype(dtype), copy=False)
    tensor = httpclient.InferInput(name, list(array.shape), wire)
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def _output(result: Any, name: str) -> Any:
    try:
        return result.as_numpy(name)
    except Exception:  # an output that came back malformed counts as missing
        return None


def _generated_feed(spec: DeploymentSpec) -> dict[str, np.ndarray]:
    """One request made from the signature: free dims as 1, normal floats, zero integers."""
    import numpy as np

    rng = np.random.default_rng(0)
    feed: dict[str, np.ndarray] = {}
    for tensor in spec.inputs:
        shape = tuple(1 if dim < 0 else dim for dim in tensor.dims)
        if SERVING_DTYPES[tensor.dtype] == "BYTES":
            feed[tensor.name] = np.full(shape, b"", dtype=object)
        elif tensor.dtype.startswith("float"):
            feed[tensor.name] = rng.standard_normal(shape).astype(tensor.dtype)
        elif tensor.dtype == "bfloat16":
            feed[tensor.name] = np.zeros(shape, dtype=np.float32)
        else:
            feed[tensor.name] = np.zeros(shape, dtype=tensor.dtype)
    return feed


def _smoke_summary(smoke: SmokeResult) -> str:
    if smoke.parity is None:
        return f"{smoke.samples} request(s) answered (no reference outputs to compare)"
    worst = max((output.max_abs_error or 0.0 for output in smoke.parity.outputs), default=0.0)
    return f"{smoke.samples} request(s) match the reference (max abs error {worst:.3g})"


def _server_text(exc: Any) -> str:
    text = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    return (str(text) if text else str(exc))[:_MAX_DETAIL_CHARS]


def _first_line(text: str) -> str:
    """Triton's error without its traceback ("At: ...") lines, as one sentence."""
    head = re.split(r"\n\s*At:\s*\n", text or "", maxsplit=1)[0]
    line = " ".join(part.strip() for part in head.splitlines() if part.strip())
    line = line[:500].rstrip()
    return line if line.endswith(".") else line + "."
