"""Confine the calling process for good: Landlock for files and TCP, Slipway's seccomp filter.

For engine code that runs in a process Slipway does not start, and so can't put inside
bubblewrap (workers/engine/isolation.py): Triton's python stub, which loads a variant with
Slipway's backends (targets/triton_python_model.py). The stub confines itself before it
opens the variant; from then on it, and anything the variant makes a runtime do, can:

- read the folders it was given (the version's files, its Python paths, the system libraries,
  CPU facts), its own `/proc/self`, and the device nodes it needs;
- write only to `/dev/shm` (where Triton hands tensors over) and `/dev/null`-like devices;
- open no TCP connection and bind no TCP port (Landlock ABI 4 and later);
- make none of the syscalls Slipway's seccomp filter refuses.

Landlock is a Linux security module any process may use on itself, without privileges (kernel
5.13+; the rules only ever narrow). A host without it fails closed with a sentence, unless
SLIPWAY_SANDBOX_ISOLATION=limits allows running unconfined, as for the worker's sandbox.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from workers.engine.isolation import (
    _ENGINE_CODE,
    _REPO_ROOT,
    ISOLATION_ENV,
    LIMITS,
    IsolationUnavailable,
    isolation_mode,
    seccomp_filter,
)

# Syscall numbers, the same on every architecture Linux added them to after 5.x.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_ATTRIBUTE_TSYNC = 4  # SCMP_FLTATR_CTL_TSYNC

# LANDLOCK_ACCESS_FS_* bits, and the ABI that introduced the later ones.
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (1 << 13) - 1  # execute .. make_sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV  # rights a file (not a folder) takes
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is not available."""
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(version))


def _handled_fs(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


def _system_readable() -> list[str]:
    paths = ["/usr", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/ld.so.conf.d", "/etc/localtime"]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(_ENGINE_CODE)]
    # Python paths, but of Slipway's checkout only the engine's code (the checkout may hold
    # the data folder).
    for entry in sys.path:
        real = os.path.realpath(entry or ".")
        if not (real == str(_REPO_ROOT) or str(_REPO_ROOT).startswith(real.rstrip("/") + "/")):
            paths.append(real)
    paths += ["/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/driver/nvidia"]
    paths += ["/sys/devices/system/cpu", "/sys/devices/system/node", "/sys/fs/cgroup", "/sys/bus/pci", "/sys/devices"]
    return paths


def confine_self(readable: Sequence[str | Path], writable: Sequence[str | Path] = ()) -> str:
    """Restrict this process (and all it starts) for the rest of its life; returns a sentence
    saying how. Raises IsolationUnavailable when the kernel can't, unless the weaker mode is
    explicitly allowed (then nothing is restricted and the sentence says so)."""
    if isolation_mode() == LIMITS:
        return f"not confined: {ISOLATION_ENV}=limits allows running models without isolation."
    abi = landlock_abi()
    if abi < 1:
        raise IsolationUnavailable(
            "This host can't confine the model's process: the kernel has no Landlock (Linux 5.13+ with "
            f"'landlock' in its LSM list). Use such a kernel, or set {ISOLATION_ENV}=limits on this server to serve "
            "models unconfined."
        )
    libc = ctypes.CDLL(None, use_errno=True)
    handled_fs = _handled_fs(abi)
    attr = _RulesetAttr(handled_fs, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 4 else ctypes.sizeof(ctypes.c_uint64)
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise IsolationUnavailable(f"Landlock refused a ruleset: {os.strerror(ctypes.get_errno())}.")
    try:
        read = _READ_FILE | _READ_DIR | _EXECUTE
        write = handled_fs & ~_EXECUTE
        devices = _READ_FILE | _WRITE_FILE | (_IOCTL_DEV if abi >= 5 else 0)
        rules = [(p, read) for p in [*_system_readable(), *map(str, readable)]]
        rules += [("/dev/shm", write), *((str(p), write) for p in writable)]  # noqa: S108 - Triton's tensors
        rules += [(d, devices) for d in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full")]
        rules += [(d, devices) for d in _gpu_devices()]
        for path, access in rules:
            _add_path_rule(libc, ruleset, path, access & handled_fs)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise IsolationUnavailable(f"no_new_privs could not be set: {os.strerror(ctypes.get_errno())}.")
        if libc.syscall(_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            raise IsolationUnavailable(f"Landlock could not restrict this process: {os.strerror(ctypes.get_errno())}.")
    finally:
        os.close(ruleset)
    program = seccomp_filter()
    # Every thread of the process, also those started before (Landlock binds this thread and
    # the threads it starts from now on: the variant's runtime starts its own).
    program.set_attr(_SECCOMP_ATTRIBUTE_TSYNC, 1)
    program.load()
    network = "no TCP" if abi >= 4 else "TCP not restricted (Landlock ABI < 4)"
    return f"confined: Landlock ABI {abi} (files: {len(readable)} model folder(s) read-only), {network}, seccomp."


def _gpu_devices() -> list[str]:
    try:
        return [f"/dev/{name}" for name in os.listdir("/dev") if name.startswith("nvidia")]
    except OSError:
        return []


def _add_path_rule(libc: ctypes.CDLL, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path this host doesn't have: nothing to allow
    try:
        if not os.path.isdir(path):
            access &= _FILE_ONLY
        rule = _PathBeneathAttr(access, fd)
        if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise IsolationUnavailable(f"Landlock refused a rule for {path}: {os.strerror(ctypes.get_errno())}.")
    finally:
        os.close(fd)
