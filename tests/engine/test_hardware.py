"""Hardware description: CPU model and flags from /proc/cpuinfo text, GPUs from nvidia-smi."""

import pytest

from workers.engine import hardware


def test_cpu_model_and_interesting_flags_are_read():
    text = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu sse4_2 avx2 avx512f amx_int8\n"
    )
    model, flags = hardware._cpuinfo(text)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == ("sse4_2", "avx2", "avx512f", "amx_int8")


def test_this_machine_is_described():
    info = hardware.describe_hardware()
    assert info.cores >= 1 and info.memory_bytes > 0 and info.cpu_model
    assert info.to_dict()["host"] == info.host


def test_gpus_are_parsed_from_nvidia_smi(monkeypatch, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559, 9.0, 550.54.15'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    (gpu,) = hardware.query_gpus()
    assert gpu == hardware.GpuInfo("NVIDIA H100 80GB HBM3", 81559, "9.0", "550.54.15")


def test_no_nvidia_smi_means_no_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert hardware.query_gpus() == ()


# --- profile requirements (issue 18): the probe decides, never a name -------------------------

X86_XEON = {"arch": "x86_64", "cpu_flags": ["avx2", "avx512_vnni", "amx_bf16"], "gpus": []}
GRAVITON = {"arch": "aarch64", "cpu_flags": ["asimd", "asimddp", "fphp", "i8mm"], "gpus": []}
T4_BOX = {"arch": "x86_64", "cpu_flags": ["avx2"], "gpus": [{"name": "Tesla T4", "compute_capability": "7.5"}]}


def test_an_arm_profile_is_met_by_an_arm_machine_only():
    arm = {"arch": "arm64", "cpu_features": ["asimddp"]}
    assert hardware.unmet_requirements(arm, GRAVITON) == []
    assert hardware.unmet_requirements(arm, X86_XEON) == ["it is x86_64, not aarch64", "its CPU lacks asimddp"]
    assert hardware.unmet_requirements({"arch": ["x86_64", "aarch64"]}, GRAVITON) == []


def test_gpu_requirements_read_the_probed_gpus_and_their_compute_capability():
    cuda = {"accelerator": "cuda", "min_compute_capability": "8.0"}
    assert hardware.unmet_requirements({"accelerator": "cuda"}, X86_XEON) == ["it has no NVIDIA GPU"]
    assert hardware.unmet_requirements({"accelerator": "cuda"}, T4_BOX) == []
    assert hardware.unmet_requirements(cuda, T4_BOX) == ["its GPUs (Tesla T4 (7.5)) are below compute capability 8.0"]
    h100 = {**T4_BOX, "gpus": [{"name": "H100", "compute_capability": "9.0"}]}
    assert hardware.unmet_requirements(cuda, h100) == []


def test_no_requirements_are_met_by_anything_and_said_in_words():
    assert hardware.unmet_requirements({}, {}) == []
    assert hardware.describe_requirements({}) == "any machine"
    assert hardware.describe_requirements({"arch": "arm64", "cpu_features": ["fphp"]}) == "an aarch64 CPU with fphp"
    assert hardware.describe_requirements({"accelerator": "cuda", "min_compute_capability": "8.0"}) == (
        "an NVIDIA GPU (compute capability 8.0+)"
    )


@pytest.mark.parametrize(
    ("requirements", "words"),
    [
        ("aarch64", "as an object"),
        ({"os": "linux"}, "Unknown requirement os"),
        ({"arch": 64}, "an architecture or a list"),
        ({"cpu_features": "avx2"}, "a list of CPU flags"),
        ({"accelerator": "npu"}, "Unknown accelerator 'npu'"),
        ({"min_compute_capability": "8.0"}, 'goes with accelerator "cuda"'),
        ({"accelerator": "cuda", "min_compute_capability": "eight"}, '"major.minor"'),
    ],
)
def test_requirements_that_cannot_be_checked_are_refused_with_a_sentence(requirements, words):
    with pytest.raises(ValueError, match=words):
        hardware.check_requirements(requirements)


def test_arm_cpu_flags_that_matter_for_fp16_and_int8_kernels_are_read():
    text = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes fphp asimdhp asimddp i8mm\nCPU part\t: 0xd0c\n"
    assert hardware._cpuinfo(text)[1] == ("asimd", "asimddp", "asimdhp", "fphp", "i8mm")


X86_CPUINFO = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse sse2 avx2 avx512f\n"
)
ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd asimddp fphp\nCPU implementer\t: 0x41\n"


def test_qemu_user_emulation_is_told_from_the_hosts_cpuinfo_or_the_threads_executable() -> None:
    from workers.engine.hardware import emulation_of

    said = "QEMU user-mode emulation of aarch64 on an x86-64 host (AMD EPYC)"
    assert emulation_of("aarch64", X86_CPUINFO) == said
    # QEMU 8.1+ may describe an ARM CPU in /proc/cpuinfo: the thread's executable still tells.
    assert emulation_of("aarch64", ARM_CPUINFO, "qemu-aarch64-static").startswith("QEMU user-mode emulation of aarch64")
    assert emulation_of("aarch64", ARM_CPUINFO) == ""  # a real ARM board
    assert emulation_of("x86_64", X86_CPUINFO) == ""


def test_a_rockchip_npu_is_found_from_the_device_tree_when_its_driver_is_loaded(tmp_path):
    from workers.engine.hardware import rockchip_npus

    tree = tmp_path / "proc" / "device-tree"
    tree.mkdir(parents=True)
    (tree / "compatible").write_bytes(b"radxa,rock-5b\0rockchip,rk3588\0")
    assert rockchip_npus(tmp_path) == ()  # the board, but no NPU driver
    (tmp_path / "sys" / "module" / "rknpu").mkdir(parents=True)
    assert rockchip_npus(tmp_path) == ("rk3588",)
    (tree / "compatible").write_bytes(b"raspberrypi,5-model-b\0brcm,bcm2712\0")
    assert rockchip_npus(tmp_path) == ()


def test_an_npu_requirement_is_met_only_by_that_npu():
    from workers.engine.hardware import check_requirements, describe_requirements, unmet_requirements

    wanted = {"arch": ["aarch64"], "npu": "RK3588"}
    assert check_requirements(wanted) == {"arch": ["aarch64"], "npu": "rk3588"}
    assert describe_requirements(wanted) == "an aarch64 CPU with an RK3588 NPU"
    board = {"arch": "aarch64", "cpu_flags": [], "gpus": [], "npus": ["rk3588"]}
    assert unmet_requirements(wanted, board) == []
    graviton = {"arch": "aarch64", "cpu_flags": [], "gpus": []}
    assert unmet_requirements(wanted, graviton) == ["it has no RK3588 NPU (with Rockchip's NPU driver loaded)"]
    assert unmet_requirements(wanted, {**board, "npus": ["rk3566"]}) != []
    with pytest.raises(ValueError, match="names a Rockchip SoC"):
        check_requirements({"npu": "hexagon"})
