"""Declared input signatures: valid ones parse, bad ones say what is wrong with an example."""

import pytest

from workers.engine.errors import ModelError
from workers.engine.importers.base import InputSpec
from workers.engine.signature import parse_input_specs, specs_to_json


def test_symbolic_and_fixed_dims_parse():
    data = [{"name": "ids", "shape": ["batch", "seq"], "dtype": "int64"}, {"name": "x", "shape": [None, 3]}]
    specs = parse_input_specs(data)
    assert specs == (InputSpec("ids", ("batch", "seq"), "int64"), InputSpec("x", (None, 3), "float32"))
    assert specs_to_json(specs)[0] == {"name": "ids", "shape": ["batch", "seq"], "dtype": "int64"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"name": "x"}, "JSON list"),
        ([{"shape": [1]}], "needs a non-empty 'name'"),
        ([{"name": "x", "shape": [0]}], "has dim 0"),
        ([{"name": "x", "shape": ["bad dim"]}], "has dim 'bad dim'"),
        ([{"name": "x", "shape": [1], "dtype": "complex64"}], "dtype 'complex64'"),
        ([{"name": "x", "shape": [1]}, {"name": "x", "shape": [2]}], "declared twice"),
        ([{"name": "x", "shape": [1], "layout": "NCHW"}], "unknown keys"),
    ],
)
def test_bad_signatures_are_explained(data, fragment):
    with pytest.raises(ModelError) as info:
        parse_input_specs(data)
    assert info.value.code == "invalid_inputs" and fragment in info.value.message and "Example:" in info.value.message
