"""The runtime backends this worker knows, found by name.

Adding a runtime means adding its module in this package and one line to `BACKENDS`.
Listing backends or asking their versions never fails on a missing runtime: a backend
that is not installed reports None as its version.
"""

from __future__ import annotations

from workers.engine.backends.base import Backend
from workers.engine.backends.mnn import MnnBackend
from workers.engine.backends.ncnn import NcnnBackend
from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from workers.engine.backends.openvino import OpenVinoBackend
from workers.engine.backends.tensorrt import TensorRtBackend
from workers.engine.backends.torch_cuda import TorchCudaBackend

BACKENDS: dict[str, type[Backend]] = {
    OnnxRuntimeCpuBackend.name: OnnxRuntimeCpuBackend,
    OpenVinoBackend.name: OpenVinoBackend,
    MnnBackend.name: MnnBackend,
    NcnnBackend.name: NcnnBackend,
    TensorRtBackend.name: TensorRtBackend,
    TorchCudaBackend.name: TorchCudaBackend,
}


class UnknownBackend(KeyError):
    """No backend has the name asked for."""

    def __str__(self) -> str:
        # KeyError would show the message in quotes, as if it were a key.
        return str(self.args[0])


def get_backend(name: str) -> Backend:
    """A new instance of the backend called `name`.

    Raises UnknownBackend (a KeyError) naming the known backends when there is none.
    """
    try:
        backend_class = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS)) or "none"
        raise UnknownBackend(f"There is no backend named '{name}'; known backends: {known}.") from None
    return backend_class()


def installed_backends() -> dict[str, str | None]:
    """Each known backend's runtime version on this worker, or None where it is not installed."""
    return {name: backend_class().runtime_version() for name, backend_class in BACKENDS.items()}
