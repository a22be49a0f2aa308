"""Throw-away PostgreSQL server for tests.

Starts a private ``postgres`` in a temporary directory on a free TCP port of
127.0.0.1 and tears it down again.  PostgreSQL refuses to run as root, so when
the tests run as root (CI) the data directory is handed to the unprivileged
``postgres`` user (or ``nobody``) and every server binary is run through
``runuser -u USER --``.

Usage::

    with PostgresServer() as pg:
        url = pg.create_database("t_example")  # postgresql+asyncpg://...
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "find_pg_bin"]

PG_USER = "mcu"  # database superuser created by initdb
START_TIMEOUT = 30  # seconds
DIR_PREFIX = "mcu-pgtest-"
OWNER_FILE = "owner.pid"  # pid of the test process that created the directory
SHM_MIN_FREE = 2 * 1024**3  # use /dev/shm only with >= 2 GiB free (Docker default: 64 MiB)

# Applied to every test server: durability is useless for a throw-away cluster.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}

_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH "
    "nor under /usr/lib/postgresql/*/bin. Install them, e.g. "
    "`apt-get install -y postgresql` (Debian/Ubuntu), or set PG_BINDIR to the "
    "directory that contains them."
)
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _version_key(bindir: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> numeric version for sorting
    version = Path(bindir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def _candidate_dirs() -> list[str]:
    dirs: list[str] = []
    if os.environ.get("PG_BINDIR"):
        dirs.append(os.environ["PG_BINDIR"])
    versioned = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    dirs.extend(versioned)
    return dirs


def find_pg_bin(name: str) -> str:
    """Absolute path of the PostgreSQL program ``name`` (``initdb``, ``pg_ctl``...).

    Looks in ``$PG_BINDIR``, then on ``PATH``, then in the newest
    ``/usr/lib/postgresql/*/bin``.  Symlinks are resolved so that programs
    found through ``/usr/local/bin`` links come from the real installation
    directory.  Raises ``RuntimeError`` with an install hint if missing.
    """
    env_dir = os.environ.get("PG_BINDIR")
    if env_dir:
        path = os.path.join(env_dir, name)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return os.path.realpath(found)
    for bindir in _candidate_dirs():
        path = os.path.join(bindir, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise RuntimeError(f"PostgreSQL program {name!r} not found. {_INSTALL_HINT}")


def _server_bindir() -> str:
    """Directory holding initdb, pg_ctl and postgres of one installation."""
    initdb = find_pg_bin("initdb")
    bindir = os.path.dirname(initdb)
    for prog in ("pg_ctl", "postgres"):
        if not os.access(os.path.join(bindir, prog), os.X_OK):
            raise RuntimeError(f"{prog!r} is missing next to {initdb}. {_INSTALL_HINT}")
    return bindir


def _parent_dir() -> str:
    """Where to create the cluster directory.

    ``$PGTEST_TMPDIR`` wins.  Otherwise ``/dev/shm`` if it is a roomy tmpfs
    (CREATE DATABASE is ~10x faster there than on disk, even with fsync=off),
    else ``/tmp``.  Both are world-traversable (mode 1777), which the server
    user needs when we run as root; a ``$TMPDIR`` under ``/root`` would not be.
    """
    override = os.environ.get("PGTEST_TMPDIR")
    if override:
        return override
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        roomy = st.f_bavail * st.f_frsize >= SHM_MIN_FREE
        mode = os.stat(shm).st_mode
        if roomy and mode & 0o1777 == 0o1777 and os.access(shm, os.W_OK | os.X_OK):
            return shm
    except OSError:
        pass
    return "/tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _remove_stale_dirs(parent: str) -> None:
    """Delete cluster dirs left by test processes that were killed (e.g. SIGKILL).

    Only directories whose owning test process is gone and whose postmaster is
    not running are removed, so concurrent sessions (pytest-xdist) are safe.
    """
    for path in Path(parent).glob(f"{DIR_PREFIX}*"):
        try:
            owner = int((path / OWNER_FILE).read_text().strip())
            if _pid_alive(owner):
                continue
            pid_file = path / "data" / "postmaster.pid"
            if pid_file.exists() and _pid_alive(int(pid_file.read_text().split()[0])):
                continue
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_user() -> pwd.struct_passwd | None:
    """Unprivileged account to run the server as, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(
        "Running as root, but neither a 'postgres' nor a 'nobody' user exists to run "
        "the PostgreSQL server (it refuses to run as root)."
    )


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGTERM the child when the test process dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux only)
    except (OSError, AttributeError):
        pass


def _run_coro_blocking(coro_factory: Any) -> Any:
    """Run ``coro_factory()`` to completion even if an event loop is running here."""
    result: dict[str, Any] = {}

    def runner() -> None:
        try:
            result["value"] = asyncio.run(coro_factory())
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=runner, name="pg-admin", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory (sync API)."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self.base_dir: Path | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._bindir: str | None = None
        self._user: pwd.struct_passwd | None = None
        self._running = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._db_lock = threading.Lock()

    # -- paths / urls -------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "server.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url_for(self, database: str, driver: str = "asyncpg") -> str:
        if self.port is None:
            raise RuntimeError("PostgreSQL test server is not running")
        return f"postgresql+{driver}://{PG_USER}@{self.host}:{self.port}/{database}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default ``postgres`` database."""
        return self.url_for("postgres")

    @property
    def dsn(self) -> str:
        """Plain libpq/asyncpg DSN of the ``postgres`` database."""
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._running

    # -- process helpers ----------------------------------------------------
    def _cmd(self, prog: str, *args: str) -> list[str]:
        assert self._bindir is not None
        cmd = [os.path.join(self._bindir, prog), *args]
        if self._user is not None:
            runuser = shutil.which("runuser")
            if runuser:
                return [runuser, "-u", self._user.pw_name, "--", *cmd]
        return cmd

    def _subprocess_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self._user is not None and not shutil.which("runuser"):
            # No runuser (non util-linux system): drop privileges in the child.
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        # cwd: the server user may not be allowed to read the caller's cwd.
        kwargs.update(env=env, cwd=self.base_dir)
        return kwargs

    def _run(self, prog: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self._cmd(prog, *args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            check=False,
            **self._subprocess_kwargs(),
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{prog} failed with exit code {proc.returncode}:\n"
                f"{proc.stdout}{proc.stderr}{self._log_tail()}"
            )
        return proc

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- last lines of {self.log_file} ---\n{tail}\n"

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> PostgresServer:
        if self._running:
            return self
        began = time.monotonic()
        self._bindir = _server_bindir()
        self._user = _run_user()
        parent = _parent_dir()
        _remove_stale_dirs(parent)
        self.base_dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent))
        try:
            (self.base_dir / OWNER_FILE).write_text(f"{os.getpid()}\n")
            if self._user is not None:
                os.chown(self.base_dir, self._user.pw_uid, self._user.pw_gid)
            os.chmod(self.base_dir, 0o755)
            self._initdb()
            self._start_server()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        atexit.register(self.stop)  # safety net if a fixture finalizer never runs
        return self

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", PG_USER,
            "--auth=trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        conf = "".join(f"{key} = {value}\n" for key, value in self.settings.items())
        conf += f"unix_socket_directories = '{self.base_dir}'\n"
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# --- tests/support/postgres.py ---\n" + conf)

    def _start_server(self) -> None:
        last_error: Exception | None = None
        for _attempt in range(3):  # the free port may be taken before postgres binds it
            self.port = _free_port()
            try:
                self._spawn_postgres()
                self._wait_until_ready()
            except RuntimeError as exc:
                last_error = exc
                self._kill_postgres()
                log = self._log_tail()
                if "could not bind" not in log and "already in use" not in log:
                    break
            else:
                self._running = True
                return
        self.port = None
        assert last_error is not None
        raise last_error

    def _spawn_postgres(self) -> None:
        """Run ``postgres`` as our child so it is reaped by us (no zombies)."""
        assert self.base_dir is not None
        kwargs = self._subprocess_kwargs()
        if threading.current_thread() is threading.main_thread():
            # Kill the server if the test process dies without running stop().
            kwargs["preexec_fn"] = _die_with_parent
        with self.log_file.open("ab") as log:
            if self._user is not None:
                os.chown(self.log_file, self._user.pw_uid, self._user.pw_gid)
            self._proc = subprocess.Popen(
                self._cmd("postgres", "-D", str(self.data_dir), "-p", str(self.port)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **kwargs,
            )

    def _wait_until_ready(self) -> None:
        """Wait until postmaster.pid says "ready" and the TCP port accepts connections."""
        assert self._proc is not None
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"PostgreSQL exited with code {self._proc.returncode} during startup "
                    f"(port {self.port}).{self._log_tail()}"
                )
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            # Line 8 of postmaster.pid is the postmaster status (what pg_ctl -w checks).
            if len(lines) >= 8 and lines[7].strip() == "ready":
                try:
                    with socket.create_connection((self.host, self.port), timeout=1):
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not accept connections on {self.host}:{self.port} "
                    f"within {START_TIMEOUT}s.{self._log_tail()}"
                )
            time.sleep(0.02)

    def _pg_ctl_stop(self) -> None:
        if self.base_dir is not None and (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w",
                      "-t", str(START_TIMEOUT), check=False)  # fmt: skip
        self._kill_postgres()

    def _kill_postgres(self) -> None:
        """Reap our postgres child; escalate if it is still alive."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for action in (None, proc.terminate, proc.kill):
            if action is not None:
                with contextlib.suppress(ProcessLookupError):
                    action()
            try:
                proc.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m immediate``) and delete its directory."""
        if self.base_dir is None:
            return
        try:
            self._pg_ctl_stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
            self.port = None
            self._running = False
            atexit.unregister(self.stop)

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep its data directory and port, so that ``resume()`` brings
        the same cluster back. ``fast``: an administrator's restart (sessions are cut, all
        committed data kept); ``immediate``: a crash (with this class's default
        ``synchronous_commit=off`` the last commits may be lost; pass
        ``settings={"synchronous_commit": "on"}`` to keep them)."""
        if not self._running:
            return
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w",
                  "-t", str(START_TIMEOUT), check=False)  # fmt: skip
        self._kill_postgres()
        self._running = False

    def resume(self) -> None:
        """Start a halted server again on the same port (crash recovery runs as usual)."""
        if self._running:
            return
        if self.base_dir is None or self.port is None:
            raise RuntimeError("resume() needs a server that was started and then halted")
        self._spawn_postgres()
        self._wait_until_ready()
        self._running = True

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- databases ----------------------------------------------------------
    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy asyncpg URL.

        Safe to call from sync code and from inside a running event loop.
        """
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid test database name: {name!r}")
        if not self._running:
            raise RuntimeError("PostgreSQL test server is not running")

        async def create() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.dsn, timeout=START_TIMEOUT)
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template1')
            finally:
                await conn.close()

        # Concurrent CREATE DATABASE from the same template can fail with
        # "source database is being accessed by other users"; serialise.
        with self._db_lock:
            _run_coro_blocking(create)
        return self.url_for(name)
