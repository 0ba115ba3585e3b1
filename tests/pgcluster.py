"""A throwaway PostgreSQL cluster for the test suite.

    cluster = PgCluster.start(base_dir)       # initdb + start on a free port, a few seconds
    cluster.url                               # postgresql+asyncpg://postgres@127.0.0.1:PORT/bridge_test
    url = cluster.create_database("t1")       # a fresh, empty database
    cluster.stop()                            # immediate shutdown, waits for the processes to exit

The cluster is tuned for speed, not durability (fsync off, no synchronous commit, trust
authentication on 127.0.0.1 only): never point it at data you care about.

PostgreSQL refuses to run as root, so under root the server runs as the `postgres` system user
(which the `postgresql` package creates) and its files live in a scratch directory of our own
(see `_scratch_dir`). No pytest import: usable from fixtures, scripts and benchmarks alike.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SERVER_USER = "postgres"  # the system user the server runs as when we are root
SUPERUSER = "postgres"  # the database superuser initdb creates; trust auth, no password
DEFAULT_DATABASE = "bridge_test"
HOST = "127.0.0.1"
# Where Debian/Ubuntu install the server binaries, one directory per major version.
PG_LIB_ROOT = Path("/usr/lib/postgresql")
BINARIES = ("initdb", "pg_ctl", "postgres")
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
# sun_path holds 108 bytes; the server appends "/.s.PGSQL.NNNNN" to the socket directory.
_MAX_SOCKET_DIR = 90
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found: looked at "
    "`pg_config --bindir`, {lib_root}/<version>/bin and PATH. Install them with "
    "`sudo apt-get install postgresql` (Debian/Ubuntu; `make postgres` does it), "
    "`brew install postgresql` (macOS) or your distribution's PostgreSQL server package, "
    "or set PGCLUSTER_BINDIR to the directory that holds initdb."
)


class PgClusterError(RuntimeError):
    """The cluster could not be found, started or stopped."""


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() and os.access(bindir / name, os.X_OK) for name in BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (-1,)


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres, or PgClusterError saying how to install."""
    candidates: list[Path] = []
    if override := os.environ.get("PGCLUSTER_BINDIR"):
        candidates.append(Path(override))
    if pg_config := shutil.which("pg_config"):
        # pg_config may come from libpq-dev alone (no server) or from another major version:
        # its bindir only counts when the server binaries are really there.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    with contextlib.suppress(OSError):
        versions = [p for p in PG_LIB_ROOT.iterdir() if (p / "bin").is_dir()]
        candidates.extend(p / "bin" for p in sorted(versions, key=_version_key, reverse=True))
    if initdb := shutil.which("initdb"):
        # Follow symlinks (e.g. /usr/local/bin/initdb -> .../15/bin/initdb) to the real bindir.
        candidates.extend([Path(initdb).resolve().parent, Path(initdb).parent])
    for bindir in candidates:
        if _has_server(bindir):
            return bindir
    raise PgClusterError(INSTALL_HINT.format(lib_root=PG_LIB_ROOT))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _others_can_traverse(path: Path) -> bool:
    """Whether a user other than the owner (and not in its group) can reach into `path`."""
    try:
        for part in [path, *path.parents]:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True


def _scratch_dir() -> Path:
    """A new private directory the `postgres` user can reach, for when we run as root.

    pytest's temporary directories live under /tmp/pytest-of-<user>/, which pytest creates
    with mode 0700: a server running as `postgres` could neither create its data directory
    there nor even reach it. So under root the cluster lives in a directory of its own,
    made with mkdtemp in a temp directory that everybody can traverse (/tmp is 1777) and
    then handed to `postgres`; stop() removes it (after copying the server log to base_dir).
    """
    candidates = [tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]
    for candidate in candidates:
        parent = Path(candidate)
        if parent.is_dir() and _others_can_traverse(parent):
            return Path(tempfile.mkdtemp(prefix="pgcluster-", dir=parent))
    raise PgClusterError(
        f"no temp directory that the {SERVER_USER!r} user can reach: tried {candidates}"
    )


def _server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PgClusterError(
            f"running as root, but there is no {SERVER_USER!r} system user to run PostgreSQL "
            "as (PostgreSQL refuses to run as root). Install the server package "
            "(`apt-get install postgresql` creates the user) or run the tests as another user."
        ) from None


def _as_server_user(argv: Sequence[str]) -> list[str]:
    """Prefix `argv` so that it runs as the `postgres` user (we are root)."""
    if runuser := shutil.which("runuser"):
        return [runuser, "-u", SERVER_USER, "--", *argv]
    if setpriv := shutil.which("setpriv"):
        return [
            setpriv,
            f"--reuid={SERVER_USER}",
            f"--regid={SERVER_USER}",
            "--init-groups",
            "--",
            *argv,
        ]
    if su := shutil.which("su"):
        return [su, "-s", "/bin/sh", SERVER_USER, "-c", shlex.join(argv)]
    raise PgClusterError("running as root, but none of runuser, setpriv or su is available")


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie no longer runs anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return status.rpartition(")")[2].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    """The server's child processes (backends, checkpointer...), from /proc when there is one."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def _run_in_thread(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private event loop in a helper thread.

    create_database() is synchronous and may be called while the caller's event loop runs
    (a fixture of an async test), where asyncio.run() would refuse to start.
    """
    values: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            values.append(asyncio.run(coro_factory()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="pgcluster", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return values[0]


class PgCluster:
    """A running throwaway cluster; see the module docstring."""

    def __init__(
        self,
        *,
        base_dir: Path,
        bindir: Path,
        work_dir: Path,
        socket_dir: Path,
        owns_socket_dir: bool,
        run_as_server_user: bool,
    ) -> None:
        self.base_dir = base_dir
        self.bindir = bindir
        self.work_dir = work_dir
        self.data_dir = work_dir / "data"
        self.log_file = work_dir / "postgresql.log"
        self.socket_dir = socket_dir
        self._owns_socket_dir = owns_socket_dir
        self._as_server_user = run_as_server_user
        self.port = 0
        self.pid: int | None = None
        self.user = SUPERUSER
        self.database = DEFAULT_DATABASE
        self.startup_seconds = 0.0
        self._stopped = False

    # -- start ---------------------------------------------------------------------------

    @classmethod
    def start(cls, base_dir: Path, *, database: str = DEFAULT_DATABASE) -> PgCluster:
        """initdb a new cluster, start it on a free port and create `database`."""
        began = time.monotonic()
        bindir = find_bindir()
        base_dir = Path(base_dir).resolve()
        base_dir.mkdir(parents=True, exist_ok=True)
        as_server_user = os.geteuid() == 0
        server_user = _server_user() if as_server_user else None

        if as_server_user:
            work_dir = _scratch_dir()
        else:
            work_dir = Path(tempfile.mkdtemp(prefix="pgcluster-", dir=base_dir))
        socket_dir, owns_socket_dir = work_dir / "sock", False
        if len(str(socket_dir)) > _MAX_SOCKET_DIR:
            # A deep base_dir would overflow the socket path; the socket goes to /tmp instead.
            socket_dir, owns_socket_dir = Path(tempfile.mkdtemp(prefix="pgsock-")), True
        else:
            socket_dir.mkdir(mode=0o700)

        cluster = cls(
            base_dir=base_dir,
            bindir=bindir,
            work_dir=work_dir,
            socket_dir=socket_dir,
            owns_socket_dir=owns_socket_dir,
            run_as_server_user=as_server_user,
        )
        try:
            if server_user is not None:
                os.chmod(work_dir, 0o700)
                _chown_tree(work_dir, server_user.pw_uid, server_user.pw_gid)
                if owns_socket_dir:
                    os.chown(socket_dir, server_user.pw_uid, server_user.pw_gid)
            cluster._initdb()
            cluster._start_server()
            cluster._create(database)
        except BaseException:
            cluster.stop()
            raise
        _running.add(cluster)
        cluster.startup_seconds = time.monotonic() - began
        return cluster

    def _env(self) -> dict[str, str]:
        # PG* variables of the caller (PGDATA, PGPORT, PGHOST...) must not leak into the tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        return env

    def _run(self, argv: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        command = _as_server_user(argv) if self._as_server_user else list(argv)
        try:
            done = subprocess.run(
                command,
                cwd=self.work_dir,  # a directory the server user may enter (not root's home)
                env=self._env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(
                f"{shlex.join(command)} did not finish in {timeout}s{self._log_tail()}"
            ) from exc
        if done.returncode != 0:
            raise PgClusterError(
                f"{shlex.join(command)} failed with exit code {done.returncode}:\n"
                f"{done.stdout}{done.stderr}{self._log_tail()}"
            )
        return done

    def _initdb(self) -> None:
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            timeout=START_TIMEOUT_S,
        )

    def _start_server(self) -> None:
        # The free port is only free until someone else takes it: retry on a lost race.
        for attempt in range(3):
            self.port = _free_port()
            options = [
                f"-p {self.port}",
                f"-c listen_addresses={HOST}",
                f"-c unix_socket_directories='{self.socket_dir}'",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "start",
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        str(START_TIMEOUT_S),
                        "-o",
                        " ".join(options),
                    ],
                    timeout=START_TIMEOUT_S + 10,
                )
            except PgClusterError as exc:
                lost_race = "could not bind" in str(exc) or "already in use" in str(exc)
                if attempt < 2 and lost_race:
                    continue
                raise
            break
        self.pid = self._read_pid()

    def _read_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\nserver log (tail):\n" + "\n".join(text.splitlines()[-lines:])

    # -- use -----------------------------------------------------------------------------

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL of one database of this cluster."""
        return f"postgresql+asyncpg://{self.user}@{HOST}:{self.port}/{database}"

    def dsn_for(self, database: str) -> str:
        """The libpq-style DSN (for asyncpg.connect) of one database of this cluster."""
        return f"postgresql://{self.user}@{HOST}:{self.port}/{database}"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the `bridge_test` database."""
        return self.url_for(self.database)

    @property
    def dsn(self) -> str:
        """The asyncpg DSN of the `bridge_test` database."""
        return self.dsn_for(self.database)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        self._create(name)
        return self.url_for(name)

    def _create(self, name: str) -> None:
        if not _DB_NAME.match(name):
            msg = f"database name {name!r}: use letters, digits and _ (at most 63)"
            raise ValueError(msg)
        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(self.dsn_for("postgres"), timeout=30)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        _run_in_thread(create)

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Immediate shutdown; returns once the server processes have exited. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        _running.discard(self)
        try:
            self._stop_server()
        finally:
            self._clean_up()

    def _stop_server(self) -> None:
        pid = self.pid or self._read_pid()
        if pid is None and not (self.data_dir / "postmaster.pid").exists():
            return  # never started
        children = _children(pid) if pid is not None else []
        with contextlib.suppress(PgClusterError):
            self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    str(STOP_TIMEOUT_S),
                ],
                timeout=STOP_TIMEOUT_S + 10,
            )
        if pid is None:
            return
        # pg_ctl waits for postmaster.pid to go; make sure the processes are gone too.
        # SIGQUIT is PostgreSQL's immediate shutdown, SIGKILL the last resort.
        for sig, wait_s in ((None, 5.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                for target in [pid, *children]:
                    with contextlib.suppress(OSError):
                        os.kill(target, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not any(_pid_alive(p) for p in [pid, *children]):
                    return
                time.sleep(0.01)
        raise PgClusterError(f"the PostgreSQL server (pid {pid}) did not exit")

    def _clean_up(self) -> None:
        # Keep the server log next to the test's other files, for post-mortems; the data
        # directory (~40 MB) goes, not to pile up in the temp dirs pytest keeps.
        if self.log_file.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_file, self.base_dir / "postgresql.log")
        shutil.rmtree(self.work_dir, ignore_errors=True)
        if self._owns_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"pid {self.pid}"
        return f"<PgCluster {self.url} ({state})>"


# Clusters that were started and not stopped: stopped at interpreter exit so that an
# interrupted test run (Ctrl-C, a crash in a fixture) leaves no server behind.
_running: set[PgCluster] = set()


@atexit.register
def _stop_leftovers() -> None:
    for cluster in list(_running):
        with contextlib.suppress(Exception):
            cluster.stop()
