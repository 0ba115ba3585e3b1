"""A real Matrix homeserver (Synapse from PyPI) for the test suite.

    hs = Synapse.start(base_dir)                   # config + SQLite in base_dir, free port, ~1.5 s
    hs.base_url                                    # http://127.0.0.1:PORT
    user_id, token = hs.register("alice", "pw")    # shared-secret registration (HMAC-SHA1 nonce)
    hs.restart()                                   # same port, same data (tokens stay valid)
    hs.reconfigure(rc_message=RateLimit(0.1, 3))   # rewrite homeserver.yaml and restart
    hs.stop()                                      # SIGTERM, waits for the process to exit

Rate limits are generous by default (a test suite sends bursts); pass a tight `rc_message` to the
one test that proves 429 handling. The server log (stdout and stderr of the process, INFO level,
one line per request) is `hs.log_file`; every error raised here ends with its tail, and
`hs.log_tail()` gives it to failure reports. No pytest import: usable from fixtures and scripts.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

SERVER_NAME = "localhost"
HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0  # a cold start on a busy 2-core machine (imports dominate)
STOP_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 30.0
INSTALL_HINT = (
    "matrix-synapse is not installed in this interpreter ({python}). Install the dev "
    "dependencies: `.venv/bin/pip install -e '.[dev]'` (or just `.venv/bin/pip install "
    "matrix-synapse`)."
)
_LOCALPART = re.compile(r"^[a-z0-9._=/+-]+$")


class SynapseError(RuntimeError):
    """The homeserver could not be found, started, stopped or used."""


@dataclass(frozen=True)
class RateLimit:
    """One Synapse rate limit: a token bucket of `burst_count` refilled at `per_second`."""

    per_second: float
    burst_count: int

    def as_config(self) -> dict[str, float | int]:
        """The homeserver.yaml form."""
        return {"per_second": self.per_second, "burst_count": self.burst_count}


GENEROUS = RateLimit(per_second=1000, burst_count=1000)


def synapse_installed() -> bool:
    """Whether `python -m synapse.app.homeserver` can run in this interpreter."""
    return importlib.util.find_spec("synapse") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _signing_key() -> str:
    """An inline ed25519 signing key line: `ed25519 <key id> <unpadded base64 seed>`."""
    seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    return f"ed25519 a_{secrets.token_hex(2)} {seed}"


def _rate_limits(generous: RateLimit, rc_message: RateLimit) -> dict[str, Any]:
    """Every client-side rate limit raised to `generous`, except messages at `rc_message`."""
    g = generous.as_config()
    return {
        "rc_message": rc_message.as_config(),
        "rc_registration": g,
        "rc_registration_token_validity": g,
        "rc_login": {"address": g, "account": g, "failed_attempts": g},
        "rc_joins": {"local": g, "remote": g},
        "rc_joins_per_room": g,
        "rc_invites": {"per_room": g, "per_user": g, "per_issuer": g},
        "rc_3pid_validation": g,
        "rc_room_creation": g,
        "rc_media_create": g,
        "rc_profile": g,
        "rc_presence": {"per_user": g},
        "rc_admin_redaction": g,
        "rc_user_directory": g,
        "rc_key_requests": g,
        "rc_delayed_event_mgmt": g,
        "rc_reports": g,
    }


class Synapse:
    """One homeserver process with its config and data in `base_dir`; see the module docstring."""

    def __init__(
        self,
        base_dir: Path,
        *,
        rc_message: RateLimit = GENEROUS,
        app_service_config_files: Sequence[Path] = (),
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.config_file = self.base_dir / "homeserver.yaml"
        self.log_file = self.base_dir / "homeserver.log"
        self.server_name = SERVER_NAME
        self.rc_message = rc_message
        self.app_service_config_files = [Path(p).resolve() for p in app_service_config_files]
        self.extra_config = dict(extra_config or {})
        self.registration_shared_secret = secrets.token_hex(16)
        self.port = 0
        self.startup_seconds = 0.0
        self._signing_key = _signing_key()
        self._macaroon_secret = secrets.token_hex(16)
        self._form_secret = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    # -- start ---------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        base_dir: Path,
        *,
        rc_message: RateLimit = GENEROUS,
        app_service_config_files: Sequence[Path] = (),
        extra_config: Mapping[str, Any] | None = None,
    ) -> Synapse:
        """Write a config into `base_dir`, start the homeserver on a free port, wait until ready."""
        server = cls(
            base_dir,
            rc_message=rc_message,
            app_service_config_files=app_service_config_files,
            extra_config=extra_config,
        )
        server.run()
        return server

    @property
    def base_url(self) -> str:
        """The client-server API root, e.g. http://127.0.0.1:PORT."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def user_id(self, localpart: str) -> str:
        """The full Matrix user id of `localpart` on this server."""
        return f"@{localpart}:{self.server_name}"

    def config(self) -> dict[str, Any]:
        """The homeserver.yaml content (written as JSON, which YAML reads)."""
        data = self.base_dir
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "report_stats": False,
            "public_baseurl": f"{self.base_url}/",
            "pid_file": str(data / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [HOST],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
            "media_store_path": str(data / "media_store"),
            "signing_key": self._signing_key,
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": self._macaroon_secret,
            "form_secret": self._form_secret,
            "bcrypt_rounds": 4,
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "enable_metrics": False,
            "app_service_config_files": [str(p) for p in self.app_service_config_files],
            **_rate_limits(GENEROUS, self.rc_message),
        }
        config.update(self.extra_config)
        return config

    def write_config(self) -> None:
        """(Re)write homeserver.yaml from the current settings."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "media_store").mkdir(exist_ok=True)
        self.config_file.write_text(json.dumps(self.config(), indent=2) + "\n")

    def run(self) -> None:
        """Start the process (a free port on first start, the same port afterwards)."""
        if not synapse_installed():
            raise SynapseError(INSTALL_HINT.format(python=sys.executable))
        if self.running:
            raise SynapseError(f"{self!r} is already running")
        began = time.monotonic()
        keep_port = self.port != 0
        # A free port is only free until someone else takes it; on restart the old port may
        # linger a moment after the process exits. Retry a lost race a few times.
        for attempt in range(5):
            if not keep_port:
                self.port = _free_port()
            self.write_config()
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            self._spawn()
            try:
                self._wait_ready(log_offset)
            except SynapseError as exc:
                lost_race = "Address already in use" in str(exc)
                self._terminate()
                if lost_race and attempt < 4:
                    log.warning("port %d taken, retrying (attempt %d)", self.port, attempt + 1)
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise
            break
        _running.add(self)
        self.startup_seconds = time.monotonic() - began
        log.info("synapse ready on %s in %.2fs", self.base_url, self.startup_seconds)

    def _spawn(self) -> None:
        self._log_handle = self.log_file.open("ab")
        self._log_handle.write(f"--- starting on port {self.port} ---\n".encode())
        self._log_handle.flush()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_file)],
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def _wait_ready(self, log_offset: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"{self.base_url}/_matrix/client/versions"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SynapseError(
                    f"synapse exited with code {self._proc.returncode} while starting"
                    f"{self.log_tail(since=log_offset)}"
                )
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.05)
        raise SynapseError(
            f"synapse did not answer {url} within {START_TIMEOUT_S}s"
            f"{self.log_tail(since=log_offset)}"
        )

    # -- stop / restart ------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM, wait for the process to exit (SIGKILL as a last resort). Idempotent."""
        _running.discard(self)
        self._terminate()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                    try:
                        proc.wait(timeout=wait_s)
                        break
                    except subprocess.TimeoutExpired:
                        log.warning("synapse pid %d ignored %s", proc.pid, sig.name)
                else:
                    raise SynapseError(f"synapse (pid {proc.pid}) did not exit{self.log_tail()}")
        finally:
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same data (users, rooms, tokens)."""
        self.stop()
        self.run()

    def reconfigure(
        self,
        *,
        rc_message: RateLimit | None = None,
        app_service_config_files: Sequence[Path] | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Change settings (None keeps one), rewrite homeserver.yaml and restart if running."""
        if rc_message is not None:
            self.rc_message = rc_message
        if app_service_config_files is not None:
            self.app_service_config_files = [Path(p).resolve() for p in app_service_config_files]
        if extra_config is not None:
            self.extra_config = dict(extra_config)
        if self.running:
            self.restart()
        else:
            self.write_config()

    # -- users ---------------------------------------------------------------------------

    def register(self, username: str, password: str, admin: bool = False) -> tuple[str, str]:
        """Create a user by shared-secret registration; returns (user_id, access_token)."""
        if not _LOCALPART.match(username):
            msg = f"localpart {username!r}: use lowercase letters, digits and ._=/+-"
            raise ValueError(msg)
        url = f"{self.base_url}/_synapse/admin/v1/register"
        nonce = self._http_json("GET", url)["nonce"]
        message = "\x00".join([nonce, username, password, "admin" if admin else "notadmin"])
        mac = hmac.new(self.registration_shared_secret.encode(), message.encode(), hashlib.sha1)
        body = {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        answer = self._http_json("POST", url, body)
        return str(answer["user_id"]), str(answer["access_token"])

    def _http_json(self, method: str, url: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise SynapseError(f"{method} {url} answered {exc.code}: {detail}") from exc

    # -- logs ----------------------------------------------------------------------------

    def log_tail(self, lines: int = 40, *, since: int = 0) -> str:
        """The last `lines` lines of the server log (from byte `since`), with a heading."""
        try:
            with self.log_file.open("rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\nsynapse log {self.log_file} (tail):\n{tail}"

    def __enter__(self) -> Synapse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<Synapse {self.base_url} ({state})>"


# Servers that were started and not stopped: stopped at interpreter exit so that an
# interrupted run (Ctrl-C, a crash in a fixture) leaves no homeserver behind.
_running: set[Synapse] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()
