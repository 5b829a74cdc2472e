"""A runtime's error keeps its cause: every line of it, without source locations (issue 15)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from workers.engine.benchmark_child import _reason
from workers.engine.errors import MAX_CAUSE_CHARS, runtime_cause

# What OpenVINO raised on a detector given a size it can't take: the first line is only where.
OPENVINO = (
    "Exception from src/inference/src/cpp/infer_request.cpp:224:\n"
    "Exception from src/plugins/intel_cpu/src/node.cpp:772:\n"
    "[CPU] Concat node with name '/model/Concat' Check 'false' failed at "
    "src/plugins/intel_cpu/src/nodes/concat.cpp:80:\n"
    "Concat node has incorrect input dimensions: axis 1 sizes 20 and 21 differ.\n"
)


def test_openvinos_cause_survives_where_the_first_line_was_only_a_location():
    cause = runtime_cause(RuntimeError(OPENVINO))
    assert "infer_request.cpp" not in cause and "concat.cpp" not in cause
    assert "[CPU] Concat node with name '/model/Concat'" in cause
    assert cause.endswith("Concat node has incorrect input dimensions: axis 1 sizes 20 and 21 differ.")
    assert _reason(RuntimeError(OPENVINO)) == cause.rstrip(". ")


def test_onnxruntimes_status_prefix_and_source_location_are_dropped():
    shape = numpy_helper.from_array(np.array([3, -1], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_to_3")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as raised:
        session.run(None, {"x": np.zeros((1, 4), dtype=np.float32)})
    cause = runtime_cause(raised.value)
    assert not cause.startswith("[ONNXRuntimeError]")
    assert not re.search(r"\.(h|cc|cpp):\d+", cause), cause
    assert "reshape_to_3" in cause and "requested shape" in cause


def test_a_long_error_is_cut_and_says_so():
    cause = runtime_cause(RuntimeError("x" * (MAX_CAUSE_CHARS * 2)))
    assert len(cause) <= MAX_CAUSE_CHARS and cause.endswith(" [...]")
    assert runtime_cause(RuntimeError("")) == ""
