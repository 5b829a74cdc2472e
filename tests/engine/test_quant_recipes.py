"""The static INT8 recipe follows the CPU the variant will run on."""

from __future__ import annotations

import pytest

from workers.engine.quant_recipes import bf16_arithmetic, ort_static_recipe, target_cpu


def test_x86_with_vnni_gets_u8s8_per_channel_at_full_range() -> None:
    recipe = ort_static_recipe("x86_64", ("avx2", "avx512f", "avx512_vnni"))
    assert (recipe.activation_type, recipe.weight_type, recipe.per_channel, recipe.reduce_range) == (
        "uint8", "int8", True, False,
    )  # fmt: skip
    assert recipe.pairing == "U8S8" and recipe.target == "x86-64 with VNNI (avx512_vnni)"
    assert "32 bits" in recipe.reason


@pytest.mark.parametrize("flags", [("avx2",), ("avx2", "avx512f"), ()])
def test_x86_without_vnni_keeps_weights_to_7_bits(flags: tuple[str, ...]) -> None:
    recipe = ort_static_recipe("x86_64", flags)
    assert recipe.pairing == "U8S8" and recipe.per_channel and recipe.reduce_range
    assert recipe.target == "x86-64 without VNNI" and "saturate" in recipe.reason


@pytest.mark.parametrize("arch", ["aarch64", "arm64"])
def test_arm64_gets_s8s8(arch: str) -> None:
    recipe = ort_static_recipe(arch, ("asimd", "asimddp"))
    assert recipe.pairing == "S8S8" and recipe.per_channel and not recipe.reduce_range
    assert recipe.target == "ARM64 (asimddp)"


def test_an_unknown_cpu_gets_onnxruntimes_default_and_says_so() -> None:
    recipe = ort_static_recipe("riscv64", ())
    assert recipe.pairing == "S8S8" and recipe.target == "riscv64" and "no recipe" in recipe.reason


def test_a_users_per_tensor_choice_is_kept() -> None:
    assert not ort_static_recipe("x86_64", ("avx_vnni",), per_channel=False).per_channel


def test_a_profile_that_names_its_cpu_is_built_for_that_cpu_not_the_workers() -> None:
    worker = ("x86_64", ("avx2", "avx512_vnni"))
    assert target_cpu({}, *worker) == worker
    assert target_cpu({"arch": "aarch64", "cpu_flags": ["asimddp"]}, *worker) == ("aarch64", ("asimddp",))
    assert ort_static_recipe(*target_cpu({"arch": "aarch64"}, *worker)).pairing == "S8S8"


@pytest.mark.parametrize(
    ("arch", "flags", "expected"),
    [
        ("x86_64", ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), "AMX-BF16 (amx_bf16)"),
        ("x86_64", ("avx512f", "avx512_bf16"), "AVX512-BF16 (avx512_bf16)"),
        ("x86_64", ("avx2", "avx512_vnni", "amx_int8"), None),
        ("aarch64", ("asimd", "bf16"), None),
        ("", ("amx_bf16",), None),
    ],
)
def test_bf16_is_native_only_on_x86_with_amx_or_avx512_bf16(
    arch: str, flags: tuple[str, ...], expected: str | None
) -> None:
    assert bf16_arithmetic(arch, flags) == expected
