"""A corpus of hostile uploads, each built by code, each with the failure a user must read.

Every case is a `HostileCase`: a name, a builder that writes the file into a folder the
test gives, the stage that must stop it and the error code(s) and sentence fragment the user
must get there. Stages:

- "upload": `detect_upload_format` refuses it (the API answers 4xx before storing anything);
- "inspect": the upload is accepted, the sandboxed inspect step fails it;
- "import": a framework file whose sandboxed import step fails it;
- "runtime": it passes inspection, and a runtime fails it in validate, parity or benchmark;
- "npz": a hostile calibration/validation side file, refused by `describe_npz` at upload.

Nothing here needs a network or a model hub; torch and TensorFlow are never imported (the
torch archives are written by hand, as an attacker's tool would). Pickled payloads create a
marker file when unpickled (`PAYLOAD_MARKER` in the folder the case is built in), so a test
can prove that nothing ever loaded them.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests import modelzoo

PAYLOAD_MARKER = "PAYLOAD-RAN"
HUGE = 2**40  # elements: 4 TiB of float32


@dataclass(frozen=True)
class HostileCase:
    """One hostile upload and what must happen to it."""

    name: str
    build: Callable[[Path], Path]
    stage: str
    codes: tuple[str, ...]
    fragment: str
    what: str
    slow: bool = False

    def make(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return self.build(folder)


# --- protobuf wire format, for files the onnx helpers refuse to write -------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def length_field(field: int, body: bytes) -> bytes:
    return tag(field, 2) + varint(len(body)) + body


def varint_field(field: int, value: int) -> bytes:
    return tag(field, 0) + varint(value)


# --- small valid models ----------------------------------------------------------------------


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def _model(
    graph: onnx.GraphProto, *, extra_opsets: Iterable[tuple[str, int]] = (), **kwargs: object
) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", modelzoo.OPSET)]
        + [helper.make_opsetid(domain, version) for domain, version in extra_opsets],
        producer_name="slipway-hostile",
        **kwargs,
    )
    model.ir_version = modelzoo.IR_VERSION
    return model


def _one_node(
    node: onnx.NodeProto,
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializer: list[onnx.TensorProto] | None = None,
    **kwargs: object,
) -> onnx.ModelProto:
    return _model(helper.make_graph([node], "hostile", inputs, outputs, initializer=initializer or []), **kwargs)


def _float(name: str, shape: list[int | str | None] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def cnn_bytes(folder: Path) -> bytes:
    return modelzoo.make_cnn_onnx(folder / "cnn-source.onnx").read_bytes()


# --- truncated and bit-flipped ONNX ------------------------------------------------------------


def truncated(frac: float) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        data = cnn_bytes(folder)
        path = folder / f"truncated-{int(frac * 1000)}.onnx"
        path.write_bytes(data[: int(len(data) * frac)])
        return path

    return build


def cut_after_graph(folder: Path) -> Path:
    """The file ends exactly after the graph field: the header scan sees whole fields, but the
    opset imports are missing."""
    model = onnx.load_from_string(cnn_bytes(folder))
    graph_end = len(varint_field(1, model.ir_version)) + len(length_field(7, model.graph.SerializeToString()))
    data = varint_field(1, model.ir_version) + length_field(7, model.graph.SerializeToString())
    path = folder / "cut-after-graph.onnx"
    path.write_bytes(data[:graph_end])
    return path


def bitflipped(needle: bytes, delta: int, bit: int) -> Callable[[Path], Path]:
    """Flip one bit at `delta` bytes from the first occurrence of `needle` in the CNN."""

    def build(folder: Path) -> Path:
        data = bytearray(cnn_bytes(folder))
        position = data.index(needle) + delta
        data[position] ^= 1 << bit
        path = folder / f"flipped-{needle.decode(errors='replace')}-{delta}-{bit}.onnx"
        path.write_bytes(bytes(data))
        return path

    return build


def non_utf8_name(folder: Path) -> Path:
    """An output name made invalid UTF-8 (as a bit flip did in the fuzzing): the checker's
    own error message, which quotes it, can't be decoded."""
    data = bytearray(modelzoo.make_if_onnx(folder / "if-source.onnx").read_bytes())
    position = data.rindex(b"negated")
    data[position : position + 2] = b"\xec\x28"
    path = folder / "non-utf8-name.onnx"
    path.write_bytes(bytes(data))
    return path


def graph_length_lies(folder: Path) -> Path:
    """The graph field's length says 2^40 bytes follow: a claim the file cannot back."""
    model = onnx.load_from_string(cnn_bytes(folder))
    graph = model.graph.SerializeToString()
    data = varint_field(1, 8) + tag(7, 2) + varint(2**40) + graph
    path = folder / "graph-length-lies.onnx"
    path.write_bytes(data)
    return path


def raw_data_length_lies(folder: Path) -> Path:
    """An initializer whose raw_data claims 2^40 bytes, inside a graph whose own length is
    consistent with the file: only a real protobuf parser notices."""
    tensor = varint_field(1, 2**20) + varint_field(2, TensorProto.FLOAT) + length_field(8, b"w")
    tensor += tag(9, 2) + varint(2**40) + b"\x00" * 64
    graph = length_field(2, b"g") + length_field(5, tensor)
    data = varint_field(1, 8) + length_field(7, graph) + length_field(8, length_field(1, b"") + varint_field(2, 17))
    path = folder / "raw-data-length-lies.onnx"
    path.write_bytes(data)
    return path


# --- huge declared dims ------------------------------------------------------------------------


def huge_input(folder: Path) -> Path:
    """A Relu whose input and output are declared [2^40]: nothing allocates them until a runtime
    is fed an input of that size."""
    node = helper.make_node("Relu", ["x"], ["y"])
    return _save(_one_node(node, [_float("x", [HUGE])], [_float("y", [HUGE])]), folder / "huge-input.onnx")


def huge_initializer_no_data(folder: Path) -> Path:
    """An initializer that declares 2^40 elements and holds no data at all."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[HUGE])
    node = helper.make_node("Add", ["x", "w"], ["y"])
    model = _one_node(node, [_float("x", [1])], [_float("y", [HUGE])], initializer=[weight])
    return _save(model, folder / "huge-initializer.onnx")


def huge_initializer_small_data(folder: Path) -> Path:
    """dims say 2^20 x 2^20 elements, raw_data holds 16 bytes: the claim and the data disagree."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**20, 2**20], raw_data=bytes(16))
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    model = _one_node(node, [_float("x", [1, 2**20])], [_float("y", [1, 2**20])], initializer=[weight])
    return _save(model, folder / "huge-initializer-small-data.onnx")


def huge_constant_of_shape(folder: Path) -> Path:
    """Valid to every checker: ConstantOfShape asked for a [2^40] tensor. A runtime must try to
    allocate 4 TiB to run it."""
    shape = numpy_helper.from_array(np.array([HUGE], dtype=np.int64), "shape")
    node = helper.make_node("ConstantOfShape", ["shape"], ["big"])
    add = helper.make_node("Add", ["big", "x"], ["y"])
    graph = helper.make_graph([node, add], "hostile", [_float("x", [1])], [_float("y", [HUGE])], initializer=[shape])
    return _save(_model(graph), folder / "huge-constant-of-shape.onnx")


# --- deep and recursive graphs -----------------------------------------------------------------


def deep_chain(depth: int) -> Callable[[Path], Path]:
    """`depth` Relu nodes in a row, written straight to the wire format (quick for 100k)."""

    def build(folder: Path) -> Path:
        value = length_field(1, b"x") + length_field(
            2,
            length_field(1, varint_field(1, TensorProto.FLOAT) + length_field(2, length_field(1, varint_field(1, 4)))),
        )
        nodes = []
        for index in range(depth):
            source = b"x" if index == 0 else f"t{index - 1}".encode()
            target = b"y" if index == depth - 1 else f"t{index}".encode()
            nodes.append(length_field(1, length_field(1, source) + length_field(2, target) + length_field(4, b"Relu")))
        output = value.replace(length_field(1, b"x"), length_field(1, b"y"), 1)
        graph = b"".join(nodes) + length_field(2, b"chain") + length_field(11, value) + length_field(12, output)
        data = varint_field(1, modelzoo.IR_VERSION) + length_field(7, graph)
        data += length_field(8, length_field(1, b"") + varint_field(2, modelzoo.OPSET))
        path = folder / f"chain-{depth}.onnx"
        path.write_bytes(data)
        return path

    return build


def nested_if(depth: int) -> Callable[[Path], Path]:
    """If nodes nested `depth` deep through their then_branch, written inside-out as prefixes
    (building the bytes by wrapping would copy megabytes 100k times)."""

    def build(folder: Path) -> Path:
        y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]).SerializeToString()
        constant = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.zeros(1, np.float32)))
        leaf = helper.make_graph([constant], "leaf", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        leaf_bytes = leaf.SerializeToString()
        else_attr = (
            length_field(1, b"else_branch") + varint_field(20, onnx.AttributeProto.GRAPH) + length_field(6, leaf_bytes)
        )
        prefixes: list[bytes] = []
        inner = len(leaf_bytes)
        for level in range(depth):
            attr_prefix = length_field(1, b"then_branch") + varint_field(20, onnx.AttributeProto.GRAPH)
            attr_prefix += tag(6, 2) + varint(inner)
            attr_len = len(attr_prefix) + inner
            node_prefix = length_field(1, b"c") + length_field(2, b"y") + length_field(4, b"If")
            node_prefix += length_field(5, else_attr) + tag(5, 2) + varint(attr_len) + attr_prefix
            node_len = len(node_prefix) + inner
            outermost = level == depth - 1
            graph_prefix = length_field(2, b"g") + length_field(12, y_info)
            if outermost:
                c_info = helper.make_tensor_value_info("c", TensorProto.BOOL, []).SerializeToString()
                graph_prefix += length_field(11, c_info)
            graph_prefix += tag(1, 2) + varint(node_len) + node_prefix
            prefixes.append(graph_prefix)
            inner = len(graph_prefix) + inner
        head = varint_field(1, modelzoo.IR_VERSION)
        head += length_field(8, length_field(1, b"") + varint_field(2, modelzoo.OPSET))
        head += tag(7, 2) + varint(inner)
        path = folder / f"nested-if-{depth}.onnx"
        with path.open("wb") as stream:
            stream.write(head)
            for prefix in reversed(prefixes):
                stream.write(prefix)
            stream.write(leaf_bytes)
        return path

    return build


def recursive_function(folder: Path) -> Path:
    """A model-local function whose body calls itself: expanding it never ends."""
    function = helper.make_function(
        "evil.recursion",
        "Forever",
        ["x"],
        ["y"],
        [helper.make_node("Forever", ["x"], ["y"], domain="evil.recursion")],
        [helper.make_opsetid("", modelzoo.OPSET), helper.make_opsetid("evil.recursion", 1)],
    )
    node = helper.make_node("Forever", ["x"], ["y"], domain="evil.recursion")
    model = _one_node(
        node, [_float("x", [4])], [_float("y", [4])], extra_opsets=[("evil.recursion", 1)], functions=[function]
    )
    return _save(model, folder / "recursive-function.onnx")


def mutually_recursive_functions(folder: Path) -> Path:
    """Ping calls Pong calls Ping."""
    opsets = [helper.make_opsetid("", modelzoo.OPSET), helper.make_opsetid("evil.recursion", 1)]
    ping = helper.make_function(
        "evil.recursion",
        "Ping",
        ["x"],
        ["y"],
        [helper.make_node("Pong", ["x"], ["y"], domain="evil.recursion")],
        opsets,
    )
    pong = helper.make_function(
        "evil.recursion",
        "Pong",
        ["x"],
        ["y"],
        [helper.make_node("Ping", ["x"], ["y"], domain="evil.recursion")],
        opsets,
    )
    node = helper.make_node("Ping", ["x"], ["y"], domain="evil.recursion")
    model = _one_node(
        node, [_float("x", [4])], [_float("y", [4])], extra_opsets=[("evil.recursion", 1)], functions=[ping, pong]
    )
    return _save(model, folder / "mutually-recursive-functions.onnx")


def graph_cycle(folder: Path) -> Path:
    """Two nodes feeding each other: no topological order exists."""
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]
    graph = helper.make_graph(nodes, "cycle", [_float("x", [4])], [_float("a", [4])])
    return _save(_model(graph), folder / "cycle.onnx")


# --- external data -----------------------------------------------------------------------------


def _external_mlp(folder: Path) -> Path:
    return modelzoo.make_mlp_onnx(folder / "exported" / "model.onnx", with_external_data=True)


def external_location(location: str, *, zipped: bool = True) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        model = modelzoo.set_external_location(_external_mlp(folder), location)
        if not zipped:
            return model
        files = {"model.onnx": model, "weights.bin": model.parent / "weights.bin"}
        return modelzoo.make_zip(folder / "external.zip", files)

    return build


def external_entry(key: str, value: str) -> Callable[[Path], Path]:
    """Set one external-data key (offset, length) of the first initializer to `value`."""

    def build(folder: Path) -> Path:
        model_path = _external_mlp(folder)
        model = onnx.load(str(model_path), load_external_data=False)
        entries = model.graph.initializer[0].external_data
        for entry in entries:
            if entry.key == key:
                entry.value = value
                break
        else:
            entries.add(key=key, value=value)
        onnx.save_model(model, str(model_path))
        files = {"model.onnx": model_path, "weights.bin": model_path.parent / "weights.bin"}
        return modelzoo.make_zip(folder / f"external-{key}.zip", files)

    return build


def symlink_member(target: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        return modelzoo.make_hostile_zip(folder / "symlink.zip", "weights.bin", target.encode(), unix_mode=0o120777)

    return build


# --- zips written by hand: bombs, overlaps, lies ----------------------------------------------

# CRC-32 of long runs of zeros without reading them: the CRC is linear over GF(2), so the CRC
# of n zero bytes follows from squaring the "append one zero byte" operator (zlib's
# crc32_combine does the same).
_CRC_POLY = 0xEDB88320


def _gf2_times(matrix: list[int], vector: int) -> int:
    result = 0
    index = 0
    while vector:
        if vector & 1:
            result ^= matrix[index]
        vector >>= 1
        index += 1
    return result


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A+B from crc(A), crc(B) and len(B), as zlib's crc32_combine."""
    if length2 <= 0:
        return crc1
    odd = [_CRC_POLY] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


def crc32_of_zeros(count: int, prefix: bytes = b"") -> int:
    chunk = 2**20
    one = zlib.crc32(bytes(chunk))
    crc, done = zlib.crc32(prefix), 0
    block, size = one, chunk
    remaining = count
    # Binary method over 1 MiB blocks: crc(zeros of 2k MiB) from crc(zeros of k MiB).
    blocks = remaining // chunk
    while blocks:
        if blocks & 1:
            crc = crc32_combine(crc, block, size)
            done += size
        block = crc32_combine(block, block, size)
        size *= 2
        blocks >>= 1
    tail = remaining - done
    return crc32_combine(crc, zlib.crc32(bytes(tail)), tail) if tail else crc


def deflated_zeros(count: int, prefix: bytes = b"") -> tuple[list[bytes], int]:
    """A raw deflate stream of `prefix` + `count` zero bytes, as a list of byte pieces that
    repeat one 1 MiB block: after a full flush deflate forgets its history, so every flushed
    block of zeros compresses to the same bytes. Returns (pieces, compressed size)."""
    chunk = 2**20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks, tail = divmod(count, chunk)
    pieces = [head] + [block] * blocks
    if tail:
        pieces.append(compressor.compress(bytes(tail)) + compressor.flush(zlib.Z_FULL_FLUSH))
    pieces.append(compressor.flush(zlib.Z_FINISH))
    return pieces, sum(len(piece) for piece in pieces)


@dataclass
class RawMember:
    """A zip member as written by `write_raw_zip`: sizes and offsets may lie on purpose."""

    name: str
    pieces: list[bytes]
    crc: int
    file_size: int  # what the headers declare
    method: int = zipfile.ZIP_DEFLATED
    external_attr: int = 0
    point_at: int | None = None  # reuse this earlier member's local header (overlap)


def write_raw_zip(path: Path, members: list[RawMember]) -> Path:
    """A zip (ZIP64 where sizes need it) from members whose headers say what they are told to."""
    offsets: list[int] = []
    central = bytearray()
    with path.open("wb") as stream:
        for member in members:
            name = member.name.encode()
            compressed = sum(len(piece) for piece in member.pieces)
            big = member.file_size >= 0xFFFFFFFF or compressed >= 0xFFFFFFFF
            if member.point_at is not None:
                offsets.append(offsets[member.point_at])
                header_offset = offsets[-1]
            else:
                header_offset = stream.tell()
                offsets.append(header_offset)
                extra = struct.pack("<HHQQ", 1, 16, member.file_size, compressed) if big else b""
                sizes = (0xFFFFFFFF, 0xFFFFFFFF) if big else (compressed, member.file_size)
                stream.write(
                    struct.pack(
                        "<IHHHHHIIIHH",
                        0x04034B50,
                        45 if big else 20,
                        0,
                        member.method,
                        0,
                        0x21,
                        member.crc,
                        sizes[0],
                        sizes[1],
                        len(name),
                        len(extra),
                    )
                    + name
                    + extra
                )
                for piece in member.pieces:
                    stream.write(piece)
            extra = struct.pack("<HHQQ", 1, 16, member.file_size, compressed) if big else b""
            sizes = (0xFFFFFFFF, 0xFFFFFFFF) if big else (compressed, member.file_size)
            central += struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                0x031E,
                45 if big else 20,
                0,
                member.method,
                0,
                0x21,
                member.crc,
                sizes[0],
                sizes[1],
                len(name),
                len(extra),
                0,
                0,
                0,
                member.external_attr,
                header_offset,
            )
            central += name + extra
        start = stream.tell()
        stream.write(central)
        count = len(members)
        if count >= 0xFFFF:
            # ZIP64 end record and locator: the 16-bit count of the plain record can't say it.
            zip64_at = stream.tell()
            stream.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(central), start))
            stream.write(struct.pack("<IIQI", 0x07064B50, 0, zip64_at, 1))
        small = min(count, 0xFFFF)
        stream.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, small, small, len(central), start, 0))
    return path


def _tiny_model_bytes() -> bytes:
    node = helper.make_node("Relu", ["x"], ["y"])
    return _one_node(node, [_float("x", [4])], [_float("y", [4])]).SerializeToString()


def _stored(name: str, data: bytes) -> RawMember:
    return RawMember(name, [data], zlib.crc32(data), len(data), method=zipfile.ZIP_STORED)


def zip_bomb_10gb(folder: Path) -> Path:
    """model.onnx plus a weights.bin of 10 GiB of zeros in about 10 MB, with honest headers."""
    size = 10 * 2**30
    pieces, _ = deflated_zeros(size)
    return write_raw_zip(
        folder / "bomb-10gb.zip",
        [_stored("model.onnx", _tiny_model_bytes()), RawMember("weights.bin", pieces, crc32_of_zeros(size), size)],
    )


def zip_bomb_lying_header(folder: Path) -> Path:
    """The headers say weights.bin is 4 KiB; its data inflates to 10 GiB. Only counting the
    bytes while extracting catches it."""
    size = 10 * 2**30
    pieces, _ = deflated_zeros(size)
    return write_raw_zip(
        folder / "bomb-lying.zip",
        [_stored("model.onnx", _tiny_model_bytes()), RawMember("weights.bin", pieces, crc32_of_zeros(size), 4096)],
    )


def zip_with_members(count: int) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        members = [_stored("model.onnx", _tiny_model_bytes())]
        members += [_stored(f"f/{index}", b"") for index in range(count)]
        return write_raw_zip(folder / f"members-{count}.zip", members)

    return build


def nested_zips(depth: int) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        data = _tiny_model_bytes()
        name = "model.onnx"
        for level in range(depth):
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(name, data)
            data, name = buffer.getvalue(), f"level-{level}.zip"
        path = folder / f"nested-{depth}.zip"
        path.write_bytes(data)
        return path

    return build


def overlapping_entries(folder: Path) -> Path:
    """2,000 central-directory entries that all point at one 1 MiB stored member: 2 GiB
    declared from a 1 MiB file, each entry with a harmless ratio of 1 (the "better zip bomb"
    trick of overlapping files)."""
    kernel = np.random.default_rng(0).bytes(2**20)
    crc = zlib.crc32(kernel)
    members = [_stored("model.onnx", _tiny_model_bytes()), _stored("w0.bin", kernel)]
    members += [
        RawMember(f"w{index}.bin", [kernel], crc, len(kernel), zipfile.ZIP_STORED, point_at=1)
        for index in range(1, 2000)
    ]
    return write_raw_zip(folder / "overlap.zip", members)


def zip_bad_header_offset(folder: Path) -> Path:
    """The central directory points one byte into the member's local header, so what zipfile
    finds there is garbage: the cheap cousin of a zip quine (an archive whose directory points
    back into itself)."""
    path = write_raw_zip(folder / "self-reference.zip", [_stored("model.onnx", b"\x00" * 64)])
    data = bytearray(path.read_bytes())
    position = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, position + 42, 1)
    path.write_bytes(bytes(data))
    return path


def zip_unsupported_method(folder: Path) -> Path:
    """A member compressed with a method number zipfile does not implement."""
    data = _tiny_model_bytes()
    return write_raw_zip(
        folder / "method.zip", [RawMember("model.onnx", [data], zlib.crc32(data), len(data), method=97)]
    )


def zip_corrupt_deflate(folder: Path) -> Path:
    """Headers intact, deflate data garbage."""
    data = _tiny_model_bytes()
    junk = bytes([0xFF]) * 64
    return write_raw_zip(folder / "corrupt.zip", [RawMember("model.onnx", [junk], zlib.crc32(data), len(data))])


# --- pickles and torch files -------------------------------------------------------------------


class _Touch:
    """Unpickling this creates `path`: the stand-in for any code a payload would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.path,))


def payload_pickle(folder: Path, protocol: int = 4) -> bytes:
    return pickle.dumps({"weights": [1.0, 2.0], "payload": _Touch(folder / PAYLOAD_MARKER)}, protocol=protocol)


def plain_pickle(protocol: int) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / f"model-p{protocol}.pkl"
        path.write_bytes(payload_pickle(folder, protocol))
        return path

    return build


def joblib_zlib_pickle(folder: Path) -> Path:
    """What joblib.dump(model, "model.joblib", compress=3) writes: a zlib stream of a pickle."""
    path = folder / "model.joblib"
    path.write_bytes(zlib.compress(payload_pickle(folder), 3))
    return path


def npy_object_array_as_model(folder: Path) -> Path:
    path = folder / "model.npy"
    with path.open("wb") as stream:
        np.save(stream, np.array([_Touch(folder / PAYLOAD_MARKER)], dtype=object), allow_pickle=True)
    return path


def torch_save_checkpoint(folder: Path) -> Path:
    """torch.save's zip layout (archive/data.pkl, version, byteorder), written by hand, with a
    payload in data.pkl."""
    files = {
        "archive/data.pkl": payload_pickle(folder, 2),
        "archive/byteorder": b"little",
        "archive/version": b"3\n",
        "archive/.data/serialization_id": b"0123456789",
    }
    return modelzoo.make_zip(folder / "checkpoint.pt", files, compression=zipfile.ZIP_STORED)


def torchscript_with_payload(folder: Path) -> Path:
    """A TorchScript-looking archive (code/, constants.pkl, data.pkl) whose data.pkl calls a
    Python function: TorchScript's own unpickler must refuse it."""
    files = {
        "archive/data.pkl": payload_pickle(folder, 2),
        "archive/constants.pkl": pickle.dumps((), protocol=2),
        "archive/code/__torch__.py": b"class Evil(Module):\n  def forward(self, x): return x\n",
        "archive/version": b"8\n",
        "archive/byteorder": b"little",
    }
    return modelzoo.make_zip(folder / "scripted.pt", files, compression=zipfile.ZIP_STORED)


def _pt2(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    return modelzoo.make_zip(folder / name, {"prog/archive_format": b"pt2", **files}, compression=zipfile.ZIP_STORED)


def pt2_pickled_weight(folder: Path) -> Path:
    config = {"config": {"weight": {"path_name": "weight_0", "use_pickle": True}}}
    files = {
        "prog/data/weights/model_weights_config.json": json.dumps(config).encode(),
        "prog/data/weights/weight_0": payload_pickle(folder, 2),
    }
    return _pt2(folder, "pickled-weight.pt2", files)


def pt2_guard_code(folder: Path) -> Path:
    program = {
        "graph_module": {"graph": {"nodes": []}},
        "guards_code": ["__import__('os').system('touch PAYLOAD-RAN')"],
        "schema_version": {"major": 8, "minor": 0},
    }
    return _pt2(folder, "guard-code.pt2", {"prog/models/model.json": json.dumps(program).encode()})


def pt2_shape_expression(folder: Path) -> Path:
    program = {
        "graph_module": {"graph": {"nodes": [{"meta": {"expr_str": "__import__('os').getcwd()"}}]}},
        "schema_version": {"major": 8, "minor": 0},
    }
    return _pt2(folder, "expression.pt2", {"prog/models/model.json": json.dumps(program).encode()})


def pt2_native_code(folder: Path) -> Path:
    return _pt2(folder, "aoti.pt2", {"prog/data/aotinductor/model/model.so": b"\x7fELF"})


def skops_untrusted(folder: Path) -> Path:
    """A skops file whose object tree asks for os.system."""
    schema = {
        "__class__": "system",
        "__module__": "posix",
        "__loader__": "TypeNode",
        "__id__": 1,
        "protocol": 2,
        "_skops_version": "0.10.0",
    }
    return modelzoo.make_zip(folder / "model.skops", {"schema.json": json.dumps(schema).encode()})


# --- ops that upset runtimes ---------------------------------------------------------------------


def custom_domain_op(folder: Path) -> Path:
    node = helper.make_node("Detonate", ["x"], ["y"], domain="com.evil")
    model = _one_node(node, [_float("x", [4])], [_float("y", [4])], extra_opsets=[("com.evil", 1)])
    return _save(model, folder / "custom-op.onnx")


def loop_forever(folder: Path) -> Path:
    """A Loop with a trip count of 2^62 and no condition: it never ends in a runtime."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            _float("v_in", [1]),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _float("v_out", [1])],
    )
    trips = numpy_helper.from_array(np.array(2**62, dtype=np.int64), "trips")
    cond = numpy_helper.from_array(np.array(True), "cond")
    one = numpy_helper.from_array(np.ones(1, np.float32), "one")
    node = helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)
    graph = helper.make_graph([node], "forever", [_float("x", [1])], [_float("y", [1])], initializer=[trips, cond, one])
    return _save(_model(graph), folder / "loop-forever.onnx")


def reshape_nonsense(folder: Path) -> Path:
    """Reshape of 4 elements to [3, -1, -1]: two inferred dims is invalid, which only a runtime
    checks."""
    shape = numpy_helper.from_array(np.array([3, -1, -1], dtype=np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    model = _one_node(node, [_float("x", [4])], [_float("y", None)], initializer=[shape])
    return _save(model, folder / "reshape-nonsense.onnx")


def conv_zero_stride(folder: Path) -> Path:
    weight = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[0, 0], kernel_shape=[3, 3])
    model = _one_node(node, [_float("x", [1, 1, 8, 8])], [_float("y", None)], initializer=[weight])
    return _save(model, folder / "conv-zero-stride.onnx")


def topk_huge_k(folder: Path) -> Path:
    k = numpy_helper.from_array(np.array([2**62], dtype=np.int64), "k")
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"])
    outputs = [_float("values", None), helper.make_tensor_value_info("indices", TensorProto.INT64, None)]
    model = _one_node(node, [_float("x", [1, 8])], outputs, initializer=[k])
    return _save(model, folder / "topk-huge-k.onnx")


# --- hostile npz side files ---------------------------------------------------------------------


def npz_object_array(folder: Path) -> Path:
    path = folder / "object.npz"
    np.savez(path, input=np.array([_Touch(folder / PAYLOAD_MARKER)], dtype=object))
    return path


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def npz_huge_shape(folder: Path) -> Path:
    """An array whose header declares 2^40 float32 elements and holds 16 bytes."""
    header = _npy_header((HUGE,))
    return modelzoo.make_zip(folder / "huge.npz", {"input.npy": header + bytes(16)})


def npz_bomb(folder: Path) -> Path:
    """One array, honestly declared: 10 GiB of float32 zeros in about 10 MB."""
    size = 10 * 2**30
    header = _npy_header((size // 4,))
    pieces, _ = deflated_zeros(size, prefix=header)
    return write_raw_zip(
        folder / "bomb.npz", [RawMember("input.npy", pieces, crc32_of_zeros(size, prefix=header), len(header) + size)]
    )


def npz_corrupt_member(folder: Path) -> Path:
    """The header says deflate; the data is not."""
    header = _npy_header((4,))
    data = header + bytes(16)
    return write_raw_zip(folder / "corrupt.npz", [RawMember("input.npy", [b"\xff" * 40], zlib.crc32(data), len(data))])


def npz_unsupported_method(folder: Path) -> Path:
    header = _npy_header((4,))
    data = header + bytes(16)
    return write_raw_zip(
        folder / "method.npz", [RawMember("input.npy", [data], zlib.crc32(data), len(data), method=97)]
    )


def npz_many_members(folder: Path) -> Path:
    members = [_stored(f"a{index}.npy", _npy_header((1,)) + bytes(4)) for index in range(5000)]
    return write_raw_zip(folder / "many.npz", members)


def npz_traversal_name(folder: Path) -> Path:
    return modelzoo.make_zip(folder / "traversal.npz", {"../../input.npy": _npy_header((1,)) + bytes(4)})


# --- the corpus ----------------------------------------------------------------------------------

UPLOAD, INSPECT, IMPORT, RUNTIME, NPZ = "upload", "inspect", "import", "runtime", "npz"

CASES: tuple[HostileCase, ...] = ()


def gather_out_of_range(folder: Path) -> Path:
    """Gather index 1000 on a 4-element axis: index values are no checker's business."""
    indices = numpy_helper.from_array(np.array([1000], dtype=np.int64), "indices")
    node = helper.make_node("Gather", ["x", "indices"], ["y"], axis=0)
    model = _one_node(node, [_float("x", [4])], [_float("y", [1])], initializer=[indices])
    return _save(model, folder / "gather-out-of-range.onnx")


def resize_overflow(folder: Path) -> Path:
    """Resize by 10^9 in each spatial dim: the output size overflows a runtime's size arithmetic."""
    scales = numpy_helper.from_array(np.array([1, 1, 1e9, 1e9], dtype=np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"])
    output = _float("y", [1, 1, 2 * 10**9, 2 * 10**9])
    return _save(_one_node(node, [_float("x", [1, 1, 2, 2])], [output], initializer=[scales]), folder / "resize.onnx")


def tile_huge(folder: Path) -> Path:
    repeats = numpy_helper.from_array(np.array([HUGE], dtype=np.int64), "repeats")
    node = helper.make_node("Tile", ["x", "repeats"], ["y"])
    model = _one_node(node, [_float("x", [4])], [_float("y", [4 * HUGE])], initializer=[repeats])
    return _save(model, folder / "tile-huge.onnx")


# --- the corpus ----------------------------------------------------------------------------------

UPLOAD, INSPECT, IMPORT, RUNTIME, NPZ = "upload", "inspect", "import", "runtime", "npz"
# Runtime cases: what the parity reference (`parity_reference` in the sandbox) and the
# benchmark (`benchmark_variant`) must say. The validate step never fails a job: a backend
# that can't load the model gets an error column (its report says why).
PARITY_EXPECTED: dict[str, tuple[str, str]] = {
    "huge-input-dims": ("unsupported_input", "Check the input's declared dims"),
    "constant-of-shape-2^40": ("reference_failed", "Failed to allocate memory"),
    "custom-domain-op": ("reference_failed", "not a registered function/op"),
    "gather-out-of-range": ("reference_failed", "out of data bounds"),
    "resize-overflow": ("reference_failed", "Integer overflow"),
    "tile-2^40": ("reference_failed", "exceeds the supported maximum"),
    "loop-forever": ("timeout", "did not finish within"),
}
BENCHMARK_EXPECTED: dict[str, tuple[str, str]] = {
    "huge-input-dims": ("invalid_input", "Check the input's declared dims"),
    "constant-of-shape-2^40": ("run_failed", "Failed to allocate memory"),
    "custom-domain-op": ("load_failed", "not a registered function/op"),
    "gather-out-of-range": ("run_failed", "out of data bounds"),
    "resize-overflow": ("run_failed", "Integer overflow"),
    "tile-2^40": ("run_failed", "exceeds the supported maximum"),
    "loop-forever": ("timeout", "did not finish within"),
}

_C = HostileCase
CASES: tuple[HostileCase, ...] = (
    # truncated and bit-flipped
    *(
        _C(f"truncated-{frac:.1%}", truncated(frac), UPLOAD, ("truncated",), "truncated", "ONNX cut short")
        for frac in (0.001, 0.1, 0.5, 0.9, 0.999)
    ),
    _C("truncated-at-field-boundary", cut_after_graph, INSPECT, ("invalid_model",), "opset_import",
       "ends after a whole graph field; no opset imports"),
    _C("bitflip-op-type", bitflipped(b"Conv", 3, 0), INSPECT, ("invalid_model",), "No Op registered for Conw",
       "one bit of an operator name"),
    _C("bitflip-first-tag", bitflipped(b"\x08", 0, 6), UPLOAD, ("not_a_model",), "not a model format",
       "one bit of the first protobuf tag"),
    _C("bitflip-non-utf8-name", non_utf8_name, INSPECT, ("invalid_model",), "not valid UTF-8",
       "a name the checker quotes is not UTF-8 (found by bit flips)"),
    _C("graph-length-claims-2^40", graph_length_lies, UPLOAD, ("truncated",), "truncated",
       "the graph field's length says 1 TiB follows"),
    _C("raw-data-length-claims-2^40", raw_data_length_lies, INSPECT, ("invalid_model",), "could not be parsed",
       "an initializer's raw_data length lies inside a consistent graph"),
    # huge declared dims
    _C("initializer-2^40-no-data", huge_initializer_no_data, INSPECT, ("invalid_model",), "one and only one value",
       "initializer dims 2^40, no data"),
    _C("initializer-2^40-16-bytes", huge_initializer_small_data, INSPECT, ("invalid_model",),
       "too small for the declared", "initializer dims 2^20 x 2^20, 16 bytes of raw_data"),
    _C("huge-input-dims", huge_input, RUNTIME, (), "", "input and output declared [2^40]"),
    _C("constant-of-shape-2^40", huge_constant_of_shape, RUNTIME, (), "",
       "ConstantOfShape of [2^40]: data propagation and runtimes would allocate 4 TiB"),
    _C("tile-2^40", tile_huge, RUNTIME, (), "", "Tile by 2^40", slow=True),
    # deep and recursive graphs
    _C("nested-if-100k", nested_if(100_000), INSPECT, ("invalid_model",), "could not be parsed",
       "If nested 100,000 deep (protobuf's recursion limit)"),
    _C("nested-if-30", nested_if(30), INSPECT, ("too_complex",), "levels deep",
       "If nested 30 deep: parses, but OpenVINO takes time exponential in the depth"),
    _C("nested-if-16", nested_if(16), INSPECT, (), "", "If nested 16 deep: the deepest accepted"),
    _C("chain-100k", deep_chain(100_000), INSPECT, (), "", "a chain of 100,000 Relu nodes: inspects in bounded time",
       slow=True),
    _C("recursive-function", recursive_function, INSPECT, ("invalid_model",), "must not be recursive",
       "a local function that calls itself"),
    _C("mutually-recursive-functions", mutually_recursive_functions, INSPECT, ("invalid_model",),
       "must not be recursive", "Ping calls Pong calls Ping"),
    _C("graph-cycle", graph_cycle, INSPECT, ("invalid_model",), "topologically sorted", "two nodes feed each other"),
    # external data
    _C("external-data-dotdot-in-zip", external_location("../../etc/passwd"), INSPECT, ("unsafe_archive",),
       "outside the model's folder", "location ../../etc/passwd"),
    _C("external-data-absolute-in-zip", external_location("/etc/passwd"), INSPECT, ("unsafe_archive",),
       "outside the model's folder", "location /etc/passwd"),
    _C("external-data-dotdot-single-file", external_location("../../etc/passwd", zipped=False), INSPECT,
       ("unsafe_archive",), "outside the model's folder", "a plain .onnx pointing at ../../etc/passwd"),
    _C("external-data-folder-itself", external_location("."), INSPECT, ("unsafe_archive",),
       "outside the model's folder", "location '.'"),
    _C("external-data-is-the-model", external_location("model.onnx"), INSPECT, ("missing_external_data",),
       "too short", "location model.onnx (the model file itself)"),
    _C("external-data-negative-offset", external_entry("offset", "-1000"), INSPECT, ("invalid_model",),
       "negative offset", "offset -1000"),
    _C("external-data-negative-length", external_entry("length", "-1000"), INSPECT, ("invalid_model",),
       "negative offset or length", "length -1000"),
    _C("external-data-offset-10^20", external_entry("offset", "99999999999999999999"), INSPECT,
       ("missing_external_data",), "too short", "offset 10^20"),
    _C("external-data-length-not-a-number", external_entry("length", "1e9"), INSPECT, ("invalid_model",),
       "not a number", "length '1e9'"),
    _C("symlink-member", symlink_member("/etc/passwd"), UPLOAD, ("unsafe_archive",), "symbolic link",
       "weights.bin is a symlink to /etc/passwd"),
    # zips
    _C("zip-bomb-10gib", zip_bomb_10gb, UPLOAD, ("archive_too_large",), "zip bombs",
       "10 GiB of zeros in 10 MB, honest headers"),
    _C("zip-bomb-lying-header", zip_bomb_lying_header, INSPECT, ("archive_too_large",), "expands past",
       "headers say 4 KiB, data inflates to 10 GiB"),
    _C("zip-100k-members", zip_with_members(100_000), UPLOAD, ("archive_too_large",), "100,001 entries",
       "100,001 members"),
    _C("nested-zips", nested_zips(3), UPLOAD, ("archive_layout",), "no .onnx file", "zip in a zip in a zip"),
    _C("overlapping-entries", overlapping_entries, UPLOAD, ("unsafe_archive",), "overlap",
       "2,000 entries sharing one 1 MiB kernel"),
    _C("bad-local-header-offset", zip_bad_header_offset, INSPECT, ("not_a_model",), "damaged",
       "directory points into garbage"),
    _C("unsupported-compression", zip_unsupported_method, UPLOAD, ("not_a_model",), "can't unpack",
       "compression method 97"),
    _C("corrupt-deflate", zip_corrupt_deflate, INSPECT, ("not_a_model",), "damaged", "deflate data is junk"),
    # pickles and torch files
    *(
        _C(f"pickle-protocol-{protocol}", plain_pickle(protocol), UPLOAD, ("pickle_refused",),
           "does not load pickle files", "a pickle whose payload touches a file")
        for protocol in (0, 2, 5)
    ),
    _C("joblib-zlib", joblib_zlib_pickle, UPLOAD, ("pickle_refused",), "does not load pickle files",
       "joblib's zlib-compressed pickle"),
    _C("npy-object-array", npy_object_array_as_model, UPLOAD, ("not_a_model",), "not a model format",
       "an .npy holding a pickled object"),
    _C("torch-save-checkpoint", torch_save_checkpoint, UPLOAD, ("archive_layout",), "PyTorch checkpoint",
       "torch.save layout, payload in data.pkl"),
    _C("torchscript-payload", torchscript_with_payload, IMPORT, ("invalid_model",), "could not load",
       "TorchScript layout whose data.pkl calls Path.touch", slow=True),
    _C("pt2-pickled-weight", pt2_pickled_weight, IMPORT, ("unsafe_archive",), "as a pickle",
       "a .pt2 weight stored with use_pickle"),
    _C("pt2-guard-code", pt2_guard_code, IMPORT, ("unsafe_archive",), "guard code", "guard code calling os.system",
       slow=True),
    _C("pt2-shape-expression", pt2_shape_expression, IMPORT, ("unsafe_archive",), "not plain arithmetic",
       "a sympy expression that calls __import__", slow=True),
    _C("pt2-native-code", pt2_native_code, IMPORT, ("unsafe_archive",), "native code", "AOTInductor .so",
       slow=True),
    _C("skops-os-system", skops_untrusted, IMPORT, ("untrusted_types",), "posix.system",
       "a skops tree asking for os.system", slow=True),
    # ops that upset runtimes
    _C("custom-domain-op", custom_domain_op, RUNTIME, (), "", "com.evil:Detonate", slow=True),
    _C("gather-out-of-range", gather_out_of_range, RUNTIME, (), "", "Gather index 1000 of 4", slow=True),
    _C("resize-overflow", resize_overflow, RUNTIME, (), "", "Resize by 10^9", slow=True),
    _C("loop-forever", loop_forever, RUNTIME, (), "", "Loop with 2^62 trips", slow=True),
    # hostile npz side files
    _C("npz-object-array", npz_object_array, NPZ, ("invalid_calibration",), "Python objects",
       "a pickled object array whose payload touches a file"),
    _C("npz-huge-shape", npz_huge_shape, NPZ, ("invalid_calibration",), "declares shape",
       "header says 2^40 float32, 16 bytes of data"),
    _C("npz-zip-bomb", npz_bomb, NPZ, ("invalid_calibration",), "zip bombs", "10 GiB of zeros in 10 MB"),
    _C("npz-corrupt-member", npz_corrupt_member, NPZ, ("invalid_calibration",), "could not be read",
       "deflate data is junk"),
    _C("npz-unsupported-compression", npz_unsupported_method, NPZ, ("invalid_calibration",), "can't unpack",
       "compression method 97"),
    _C("npz-5000-members", npz_many_members, NPZ, ("invalid_calibration",), "5,000 entries", "5,000 arrays"),
    _C("npz-traversal-name", npz_traversal_name, NPZ, ("invalid_calibration",), "'..'", "member ../../input.npy"),
)  # fmt: skip

BY_NAME = {case.name: case for case in CASES}


def cases(stage: str, *, slow: bool | None = None) -> list[HostileCase]:
    """The cases of one stage; `slow` True or False picks the slow or the quick ones."""
    return [case for case in CASES if case.stage == stage and (slow is None or case.slow == slow)]
