"""Hardware description: CPU model and flags from /proc/cpuinfo text, GPUs from nvidia-smi."""

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
