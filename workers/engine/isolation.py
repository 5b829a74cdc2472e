"""The boundary around untrusted model code: what an engine child may see and do of the host.
It is over 600 lines because it is one security boundary, kept in one file so that it can be
reviewed as a whole: the bubblewrap arguments, the mounts, the seccomp filter, the privilege
drop and the environment a child gets.

Importing, tracing, converting and running a model executes code its author wrote (a
TorchScript `forward`, a SavedModel's `ReadFile` op, a runtime parsing a hostile graph). Memory
and time limits keep such code from taking the worker down; this module keeps it from reading
or changing the host. Every engine child (the sandbox's and the benchmark harness's) starts
inside bubblewrap (`bwrap`, the unprivileged sandbox Flatpak and GNOME use) with:

- a private filesystem view: the interpreter and its libraries read-only, Slipway's engine code
  read-only, the call's own folders (the job's scratch read-write, its inputs read-only), a
  private `/tmp` inside that scratch, and nothing else of the host: no `/etc/passwd`, no data
  folder, no other job's files, no home folders, no shell or other programs to `exec`;
- its own PID namespace (`/proc` lists only the sandbox's processes), network namespace (no
  interface but a down loopback), IPC and UTS namespaces;
- an unprivileged user: a root worker drops the child to `SLIPWAY_SANDBOX_UID` (65534,
  `nobody`, by default) with every capability gone; a non-root worker's child stays its user
  inside a user namespace, also without capabilities; `no_new_privs` is set either way;
- a seccomp filter refusing what no model needs (ptrace, mount, new namespaces, kernel
  modules, BPF, keyrings, raw and packet sockets...), made with libseccomp;
- an environment with no secrets: only an allow-list of variables passes.

When the host can't provide this (no bwrap, namespaces disabled), a call fails closed with a
sentence. `SLIPWAY_SANDBOX_ISOLATION=limits` allows the weaker mode explicitly (limits and a
scrubbed environment only), and `describe()` says so in every report. docs/adr/0008 says why.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ISOLATION_ENV = "SLIPWAY_SANDBOX_ISOLATION"
UID_ENV = "SLIPWAY_SANDBOX_UID"
MAX_PROCESSES_ENV = "SLIPWAY_SANDBOX_MAX_PROCESSES"
NAMESPACES, LIMITS = "namespaces", "limits"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_ENGINE_CODE = _REPO_ROOT / "workers"

# Variables a runtime may need; everything else of the worker's environment (database URLs,
# secret keys, cloud credentials) stays outside.
_ENV_ALLOWED = {"PATH", "LANG", "LANGUAGE", "TZ", "PYTHONHASHSEED", "CUDA_VISIBLE_DEVICES", "CUDA_MODULE_LOADING"}
_ENV_ALLOWED_PREFIXES = ("LC_", "OMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "VECLIB_", "KMP_", "NVIDIA_", "TF_CPP_")

# Syscalls a model has no business making. Refused with EPERM, so code that probes for them
# (some libraries try `unshare` or `perf_event_open`) gets an error it can handle.
_DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "keyctl",
    "add_key",
    "request_key",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "quotactl",
    "open_by_handle_at",
    "name_to_handle_at",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "personality",
    "lookup_dcookie",
    "vhangup",
)
_CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
_AF_PACKET, _SOCK_RAW, _SOCK_TYPE_MASK = 17, 3, 0xF
_EPERM, _ENOSYS = 1, 38


class IsolationUnavailable(Exception):
    """The host can't isolate untrusted code as configured; the message says what to do."""


@dataclass(frozen=True)
class SandboxView:
    """The host paths a sandboxed child sees besides the interpreter and engine code, each at
    its own path: `writable` ones read-write (the job's scratch), `readable` ones read-only."""

    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()

    @classmethod
    def of(cls, writable: Sequence[str | Path] = (), readable: Sequence[str | Path] = ()) -> SandboxView:
        return cls(tuple(Path(p).resolve() for p in writable), tuple(Path(p).resolve() for p in readable))


@dataclass(frozen=True)
class Isolation:
    """How children are isolated on this worker, as reports state it."""

    mode: str
    mechanism: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "mechanism": self.mechanism, "notes": list(self.notes)}


def isolation_mode() -> str:
    """`namespaces` (the default) or `limits`, from SLIPWAY_SANDBOX_ISOLATION."""
    mode = os.environ.get(ISOLATION_ENV, NAMESPACES).strip().lower() or NAMESPACES
    if mode not in (NAMESPACES, LIMITS):
        raise IsolationUnavailable(
            f"{ISOLATION_ENV}={mode!r} is not a sandbox mode: use {NAMESPACES!r} (the default: a private "
            f"filesystem, user, seccomp and no network) or {LIMITS!r} (memory and time limits only)."
        )
    return mode


def describe() -> Isolation:
    """What the reports say about the sandbox that produced them."""
    if isolation_mode() == LIMITS:
        return Isolation(
            mode=LIMITS,
            mechanism="resource limits only",
            notes=(
                f"{ISOLATION_ENV}=limits: model code ran with memory and time limits and a scrubbed environment, "
                "but could read the worker's files. Use this only for models you trust.",
            ),
        )
    user = f"uid {_sandbox_uid()}" if os.geteuid() == 0 else f"the worker's uid {os.geteuid()} in a user namespace"
    return Isolation(
        mode=NAMESPACES,
        mechanism=f"{_bwrap_version()} with seccomp",
        notes=(
            f"Private filesystem view, PID, network and IPC namespaces; {user} without capabilities; "
            "syscalls such as ptrace, mount and unshare refused.",
        ),
    )


def private_folders(cwd: str, env: dict[str, str]) -> dict[str, str]:
    """HOME, caches and TMPDIR inside the call's scratch folder (runtimes write telemetry and
    caches there; it is removed with the scratch), and the caller's PYTHONPATH."""
    folders = {"HOME": ".home", "XDG_CACHE_HOME": ".cache", "TMPDIR": ".tmp"}
    for folder in folders.values():
        Path(cwd, folder).mkdir(exist_ok=True)
    extra = {name: str(Path(cwd, folder)) for name, folder in folders.items()}
    # Telemetry off: onnxruntime reads this before it writes its device id; OpenVINO has no
    # variable, only an opt-out file in the home folder.
    extra["ORT_DISABLE_TELEMETRY"] = "1"
    Path(cwd, ".home", "intel").mkdir(exist_ok=True)
    Path(cwd, ".home", "intel", "openvino_telemetry").write_text("0")
    if isolation_mode() == NAMESPACES:
        extra["TMPDIR"] = "/tmp"  # noqa: S108 - the same private folder, mounted there
    if env.get("PYTHONPATH"):
        extra["PYTHONPATH"] = env["PYTHONPATH"]
    # Where the framework environments are (a path, no secret): HOME changes inside, and the
    # import reads its framework's environment there, bound read-only (docs/adr/0017).
    from workers.engine.framework_envs import envs_root

    extra["SLIPWAY_FRAMEWORK_ENVS"] = str(envs_root())
    return extra


def child_environment(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """The allow-listed part of `base` plus `extra`: no secret of the worker reaches model code."""
    env = {k: v for k, v in base.items() if k in _ENV_ALLOWED or k.startswith(_ENV_ALLOWED_PREFIXES)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return {**env, **extra}


@dataclass
class Wrapped:
    """A command ready to start: argv, descriptors to pass, and where bwrap reports the pid."""

    argv: list[str]
    pass_fds: tuple[int, ...]
    info_read: int | None
    _close: list[int]

    def started(self) -> None:
        """Close the parent's copies of the descriptors the child now holds."""
        for fd in self._close:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._close.clear()

    def child_pid(self, fallback: int) -> int:
        """The sandboxed program's pid on the host, for sampling its memory. bwrap reports the
        pid of the sandbox's init, which starts the program as its one child."""
        if self.info_read is None:
            return fallback
        import json
        import time

        with os.fdopen(self.info_read, "r") as info:
            self.info_read = None
            text = info.read()
        try:
            init = int(json.loads(text)["child-pid"])
        except (ValueError, KeyError, TypeError):
            return fallback
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{init}/task/{init}/children") as fh:
                    children = fh.read().split()
            except OSError:
                return init
            if children:
                return int(children[0])
            time.sleep(0.001)
        return init


def wrap(argv: Sequence[str], view: SandboxView, cwd: str, pythonpath: str = "") -> Wrapped:
    """`argv` (a program and its arguments) run inside the boundary; `cwd` must be writable.
    Folders on `pythonpath` are code the worker chose to run: bound read-only, except the
    checkout itself, of which only the engine's code is (it may hold the data folder)."""
    if isolation_mode() == LIMITS:
        return Wrapped(list(argv), (), None, [])
    problem = _unavailable()
    if problem:
        raise IsolationUnavailable(problem)
    fds: list[int] = []
    try:
        seccomp = _memfd("slipway-seccomp", _seccomp_program())
        fds.append(seccomp)
        passwd = _memfd("slipway-passwd", f"sandbox:x:{_inside_uid()}:{_inside_uid()}::/nonexistent:/bin/false\n")
        fds.append(passwd)
        group = _memfd("slipway-group", f"sandbox:x:{_inside_uid()}:\n")
        fds.append(group)
        info_read, info_write = os.pipe()
        fds.append(info_write)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    code = [p for p in (os.path.realpath(e) for e in pythonpath.split(os.pathsep) if e) if _extra_code(p)]
    view = SandboxView(view.writable, (*view.readable, *(Path(p) for p in code)))
    command = [
        *_bwrap_arguments(view, cwd),
        "--file",
        str(passwd),
        "/etc/passwd",
        "--file",
        str(group),
        "/etc/group",
        "--seccomp",
        str(seccomp),
        "--info-fd",
        str(info_write),
        "--",
        *_drop_privileges(),
        *argv,
    ]
    return Wrapped(command, tuple(fds), info_read, fds)


def _extra_code(path: str) -> bool:
    """A PYTHONPATH folder to bind: one that exists and is neither the checkout (or a folder
    holding it) nor already bound as the engine's code or the interpreter's prefix."""
    if not os.path.isdir(path) or _under(str(_REPO_ROOT), path) or _under(path, str(_ENGINE_CODE)):
        return False
    prefixes = (sys.base_prefix, sys.prefix)
    return not any(_under(path, os.path.realpath(prefix)) for prefix in prefixes)


def prepare_view(view: SandboxView) -> None:
    """Let the sandbox user (a root worker's child is `nobody`) use the view: the writable
    folders become its own; in the read-only ones, what others may not read (a 0700 job
    folder, a 0600 copy) is handed to it too, which the read-only mount keeps from changing."""
    if isolation_mode() == LIMITS or os.geteuid() != 0:
        return
    import stat

    for root in (*view.writable, *view.readable):
        _refuse_shared(root)
    uid, owner = _sandbox_uid(), os.geteuid()
    # Only what this worker owns changes hands: another user's file in the view stays theirs.
    for root in view.writable:
        for path, info in _walk_no_follow(root):
            if info.st_uid == owner:
                os.chown(path, uid, uid, follow_symlinks=False)
    for root in view.readable:
        for path, info in _walk_no_follow(root):
            needs = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(info.st_mode) else 0)
            if info.st_uid == owner and not stat.S_ISLNK(info.st_mode) and info.st_mode & needs != needs:
                os.chown(path, uid, uid, follow_symlinks=False)


def shared_folders() -> frozenset[str]:
    """Folders that hold other programs' files (the temp folders, home, the root): handing one
    to the sandbox user would take every private entry in it from its owner (a 0700 folder in
    /tmp that another tool keeps its state in stops being that tool's)."""
    import tempfile

    folders = {"/", "/tmp", "/var/tmp", "/dev/shm", "/home", "/root", os.path.expanduser("~"), tempfile.gettempdir()}  # noqa: S108
    return frozenset(os.path.realpath(folder) for folder in folders)


def _refuse_shared(root: Path) -> None:
    """A view's folder must be the job's own: not a shared folder, nor one holding this checkout."""
    folder = os.path.realpath(root)
    if folder in shared_folders() or _under(str(_REPO_ROOT), folder):
        raise IsolationUnavailable(
            f"The sandbox is given its files a folder at a time, and {folder} is shared with other programs "
            "(or holds Slipway's own code): it won't be handed to the sandbox user. Put the model in a folder "
            "of its own and try again."
        )


def process_limit() -> int | None:
    """RLIMIT_NPROC for a namespaced child: a fork bomb stops here instead of at the host's limit."""
    if isolation_mode() == LIMITS:
        return None
    return _positive_int(MAX_PROCESSES_ENV, 4096)


# ---- internals ---------------------------------------------------------------------------


def _walk_no_follow(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every path under `root` (itself first) with its lstat, never through a link."""
    yield str(root), os.lstat(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:  # gone since the listing: nothing to hand over
                continue
            yield path, info


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 1:
        raise IsolationUnavailable(f"{name}={raw!r} must be a positive whole number.")
    return value


def _sandbox_uid() -> int:
    uid = _positive_int(UID_ENV, 65534)
    if uid == 0:
        raise IsolationUnavailable(f"{UID_ENV} must not be 0: the sandbox's point is an unprivileged user.")
    return uid


def _inside_uid() -> int:
    return _sandbox_uid() if os.geteuid() == 0 else os.geteuid()


def _memfd(name: str, content: bytes | str) -> int:
    fd = os.memfd_create(name, 0)
    data = content.encode() if isinstance(content, str) else content
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@functools.cache
def _bwrap() -> str | None:
    return shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None)


@functools.cache
def _bwrap_version() -> str:
    binary = _bwrap()
    if binary is None:
        return "not installed"
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown version"
    return out.strip() or "unknown version"


def _setpriv() -> str | None:
    return shutil.which("setpriv") or next(
        (p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.access(p, os.X_OK)), None
    )


def seccomp_filter() -> Any:
    """Slipway's seccomp filter (a libseccomp `SyscallFilter`): allow everything but the
    syscalls no model needs, which answer EPERM."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:
        raise IsolationUnavailable(
            f"The sandbox's seccomp filter needs libseccomp and its Python binding (pyseccomp): {exc}. Install "
            f"libseccomp2 and Slipway's dependencies, or set {ISOLATION_ENV}=limits to run without isolation."
        ) from None
    program = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in _DENIED_SYSCALLS:
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # a syscall this architecture lacks
            program.add_rule(seccomp.ERRNO(_EPERM), name)
    # clone3 passes its flags in memory a filter can't read: answer ENOSYS, so libc falls back
    # to clone, whose flags it can.
    with contextlib.suppress(RuntimeError, ValueError, OSError):
        program.add_rule(seccomp.ERRNO(_ENOSYS), "clone3")
    for flag in _flag_bits(_CLONE_NAMESPACE_FLAGS):
        program.add_rule(seccomp.ERRNO(_EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    program.add_rule(seccomp.ERRNO(_EPERM), "socket", seccomp.Arg(0, seccomp.EQ, _AF_PACKET))
    program.add_rule(seccomp.ERRNO(_EPERM), "socket", seccomp.Arg(1, seccomp.MASKED_EQ, _SOCK_TYPE_MASK, _SOCK_RAW))
    return program


@functools.cache
def _seccomp_program() -> bytes:
    """The seccomp BPF program, compiled by libseccomp for this machine's architecture."""
    buffer = _BpfBuffer()
    seccomp_filter().export_bpf(buffer)
    return buffer.getvalue()


def _flag_bits(mask: int) -> list[int]:
    return [1 << bit for bit in range(64) if mask & (1 << bit)]


class _BpfBuffer(io.BytesIO):
    """libseccomp writes the program to a file descriptor: give it a memfd, then read it back."""

    def __init__(self) -> None:
        super().__init__()
        self._fd = os.memfd_create("slipway-bpf", 0)

    def fileno(self) -> int:
        return self._fd

    def getvalue(self) -> bytes:
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 65536):
            chunks.append(chunk)
        os.close(self._fd)
        return b"".join(chunks)


def _drop_privileges() -> list[str]:
    """A root worker's child becomes the sandbox user before Python starts; a non-root
    worker's child already is its unprivileged user (in a user namespace)."""
    if os.geteuid() != 0:
        return []
    setpriv = _setpriv()
    assert setpriv is not None, "checked by _unavailable"
    uid = _sandbox_uid()
    return [
        os.path.realpath(setpriv),
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]


class _Mounts:
    """bwrap's mount arguments, in order. bwrap makes the missing parents of a mount point
    owner-only (0700), which the sandbox user could not cross: each is made 0755 first."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self._made: set[str] = set()
        self._read_only: list[str] = []

    def _parents(self, dest: str) -> None:
        parts = Path(dest).parts[1:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:depth])
            if folder in self._made or any(_under(folder, ro) for ro in self._read_only):
                continue
            self._made.add(folder)
            self.args += ["--perms", "0755", "--dir", folder]

    def add(self, option: str, source: str, dest: str) -> None:
        self._parents(dest)
        self.args += [option, source, dest] if source else [option, dest]
        self._made.add(dest)
        if option in ("--ro-bind", "--symlink"):
            self._read_only.append(dest)

    def read_only(self, dest: str, remount: bool = True) -> None:
        if remount:
            self.args += ["--remount-ro", dest]
        self._read_only.append(dest)


_BIN_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/usr/games")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _system_mounts(mounts: _Mounts) -> None:
    """The interpreter, its libraries and the engine's code, read-only; no programs besides."""
    # The programs in /usr/bin (a shell, curl, ...) are none of a model's business: those
    # folders are emptied, and the interpreter (and setpriv) bound back where they live there.
    emptied = [d for d in _BIN_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    programs = [p for p in (sys.executable, _setpriv() if os.geteuid() == 0 else None) if p]
    mounts.args += ["--ro-bind", "/usr", "/usr"]
    for bindir in emptied:
        mounts.args += ["--tmpfs", bindir]
    for program in programs:
        real = os.path.realpath(program)
        if any(_under(real, d) for d in emptied):
            mounts.args += ["--ro-bind", real, real]
    for bindir in emptied:
        mounts.read_only(bindir)
    mounts.read_only("/usr", remount=False)  # bound read-only above
    for top in ("/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin"):
        if os.path.islink(top):
            mounts.add("--symlink", os.readlink(top), top)
        elif os.path.isdir(top) and top.startswith("/lib"):
            mounts.add("--ro-bind", top, top)
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(etc):
            mounts.add("--ro-bind", etc, etc)
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix)}
    for prefix in sorted(prefixes):
        if not _under(prefix, "/usr"):
            mounts.add("--ro-bind", prefix, prefix)
    mounts.add("--ro-bind", str(_ENGINE_CODE), str(_ENGINE_CODE))
    # The framework and toolchain environments (Caffe, MXNet, Paddle, LiteRT's converter): code
    # like the interpreter's own packages, which the import and the backends start (ADR 0017).
    from workers.engine.framework_envs import envs_root

    if envs_root().is_dir():
        mounts.add("--ro-bind", str(envs_root()), str(envs_root()))
    # CPU topology (onnxruntime, OpenVINO and BLAS size their thread pools from it).
    for sysdir in ("/sys/devices/system/cpu", "/sys/devices/system/node"):
        if os.path.isdir(sysdir):
            mounts.add("--ro-bind", sysdir, sysdir)
    gpus = sorted(glob.glob("/dev/nvidia*")) + [p for p in ("/dev/dri",) if os.path.exists(p)]
    if gpus:
        # The CUDA driver finds its devices through sysfs (read-only, no user data there).
        mounts.add("--ro-bind", "/sys", "/sys")
    mounts.args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]  # noqa: S108 - the sandbox's own
    for device in gpus:
        mounts.args += ["--dev-bind", device, device]


def _bwrap_arguments(view: SandboxView, cwd: str) -> list[str]:
    binary = _bwrap()
    assert binary is not None, "checked by _unavailable"
    args = [
        binary,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
    ]
    if os.geteuid() == 0:
        # Root sets the sandbox up, then setpriv drops to the sandbox user, which clears every
        # capability: only the ones that takes (and entering the sandbox user's scratch
        # folder) survive until then.
        args += ["--cap-drop", "ALL"]
        for capability in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_OVERRIDE"):
            args += ["--cap-add", capability]
    else:
        args += ["--unshare-user", "--cap-drop", "ALL"]
    mounts = _Mounts()
    # A private /tmp on the scratch folder's disk (not in memory, where it would escape the
    # memory limit). Mounted before anything else, so that what lives under the host's /tmp
    # (a checkout and its venv, job folders) is bound on top of it and stays visible.
    private_tmp = Path(cwd) / ".tmp"
    private_tmp.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(private_tmp, _sandbox_uid(), _sandbox_uid())
    mounts.add("--bind", str(private_tmp), "/tmp")  # noqa: S108 - a private one, see above
    _system_mounts(mounts)
    for path in view.readable:
        mounts.add("--ro-bind", str(path), str(path))
    for path in view.writable:
        mounts.add("--bind", str(path), str(path))
    return [*args, *mounts.args, "--chdir", cwd]


@functools.cache
def _unavailable() -> str | None:
    """Why namespaced isolation can't run here, or None. Checked once per worker process by
    starting the real boundary around `python -c pass`."""
    if _bwrap() is None:
        return (
            "This worker can't isolate untrusted models: bubblewrap (bwrap) is not installed. Install the "
            f"'bubblewrap' package, or set {ISOLATION_ENV}=limits to run models with memory and time limits only "
            "(reports will say so)."
        )
    if os.geteuid() == 0 and _setpriv() is None:
        return (
            "This worker runs as root and can't drop the sandbox to an unprivileged user: setpriv (util-linux) is "
            f"not installed. Install util-linux, run the worker as a non-root user, or set {ISOLATION_ENV}=limits."
        )
    import tempfile

    with tempfile.TemporaryDirectory(prefix="slipway-probe-") as scratch:
        try:
            view = SandboxView.of(writable=[scratch])
            prepare_view(view)
            wrapped = Wrapped(
                [*_bwrap_arguments(view, scratch), "--", *_drop_privileges(), sys.executable, "-c", "pass"],
                (),
                None,
                [],
            )
            result = subprocess.run(wrapped.argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError, IsolationUnavailable) as exc:
            return f"This worker can't start its sandbox: {exc}. Set {ISOLATION_ENV}=limits to run without isolation."
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {result.returncode}"
        return (
            f"This worker can't isolate untrusted models: bubblewrap failed ({reason}). The host must allow "
            "namespaces (in a container: a seccomp profile that permits them, see docs/adr/0008-sandbox.md), "
            f"or set {ISOLATION_ENV}=limits to run models with memory and time limits only (reports will say so)."
        )
    return None
