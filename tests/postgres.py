"""A throwaway PostgreSQL server for tests that need a real database.

Why: Optuna workers in separate processes share one study through ``optuna.storages.RDBStorage``; what
matters there (unique trial numbers under concurrent writers, heartbeats, failing and retrying the
trials of a dead worker) is decided by the database's locking and transactions, so it is tested against
a real PostgreSQL server, never a mock or SQLite.

What: ``running_postgres()`` runs ``initdb`` into a temporary directory (trust authentication, superuser
``postgres``), starts the server with ``pg_ctl`` on a free TCP port of 127.0.0.1 (no unix socket),
creates a database and yields its SQLAlchemy URL; on the way out it stops the server and deletes the
directory, also when the body or the start-up failed.

PostgreSQL refuses to run as root (``initdb`` and ``pg_ctl`` exit with "cannot be run as root"). When
the tests run as root, every PostgreSQL command is therefore run as the unprivileged account ``nobody``
(``subprocess``'s ``user=``/``group=``, so no ``su``/``runuser`` is needed), and the temporary
directory is handed to that account.

When no server can be had (no binaries, no driver for SQLAlchemy, no unprivileged account, or the server
does not start), ``PostgresUnavailable`` is raised; its message is one line, fit for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
from sqlalchemy.pool import NullPool

#: The account that runs the server when the tests run as root.
UNPRIVILEGED_USER = "nobody"
#: The superuser that ``initdb`` creates; with trust authentication it needs no password.
SUPERUSER = "postgres"
#: Settings for a throwaway server: durability is worthless here and costs time on a busy CI machine.
_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}
_PORT_ATTEMPTS = 3


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; ``str()`` of it is a one-line reason."""


@dataclass(frozen=True)
class PostgresBinaries:
    """The directory that holds ``initdb``, ``pg_ctl`` and ``postgres`` of one PostgreSQL version."""

    bindir: Path

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _pg_ctl_candidates() -> list[Path]:
    """``pg_ctl`` on PATH, in /usr/local/bin, then Debian's /usr/lib/postgresql/<version>/bin, newest first."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(Path("/usr/local/bin/pg_ctl"))

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    candidates.extend(bindir / "pg_ctl" for bindir in debian)
    return candidates


def find_postgres_binaries() -> PostgresBinaries | None:
    """The first candidate ``pg_ctl`` whose real directory also holds ``initdb`` and ``postgres``.

    Symlinks (such as /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl) are resolved first,
    so the three programs always come from one installation and one version.
    """
    for candidate in _pg_ctl_candidates():
        if not _is_executable(candidate):
            continue
        bindir = candidate.resolve().parent
        if all(_is_executable(bindir / name) for name in ("initdb", "pg_ctl", "postgres")):
            return PostgresBinaries(bindir)
    return None


def sqlalchemy_dialect() -> str | None:
    """``postgresql+psycopg2`` or ``postgresql+psycopg``, whichever driver is installed, else None."""
    for module, dialect in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        if importlib.util.find_spec(module) is not None:
            return dialect
    return None


def unavailable_reason() -> str | None:
    """One line saying why ``running_postgres()`` cannot work here, or None when it can be tried."""
    if find_postgres_binaries() is None:
        return (
            "PostgreSQL not found: no initdb, pg_ctl and postgres side by side on PATH, in /usr/local/bin "
            "or in /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
        )
    if sqlalchemy_dialect() is None:
        return "no PostgreSQL driver for SQLAlchemy: pip install psycopg2-binary (in the test extra)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            return f"running as root and there is no user {UNPRIVILEGED_USER!r} to run PostgreSQL as"
    return None


@dataclass(frozen=True)
class _Account:
    """Whom the PostgreSQL commands run as: None ids mean the current user."""

    uid: int | None = None
    gid: int | None = None

    @staticmethod
    def for_server() -> _Account:
        if os.geteuid() != 0:
            return _Account()
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        return _Account(entry.pw_uid, entry.pw_gid)

    def run(
        self, command: list[str], *, cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``command`` as this account, output captured; never raises for a non-zero exit status."""
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=self.uid,
            group=self.gid,
            extra_groups=None if self.uid is None else [],
        )


def _check_traversable(path: Path, account: _Account) -> None:
    """Refuse early when the server account could not reach ``path`` (a TMPDIR under /root, say)."""
    if account.uid is None:
        return
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise PostgresUnavailable(
                f"{parent} is not searchable by {UNPRIVILEGED_USER!r}, who runs PostgreSQL for root; "
                "set TMPDIR to a world-searchable directory such as /tmp"
            )


def _free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (the start is retried if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _log_since(log_file: Path, offset: int) -> str:
    """The server log written after byte ``offset`` (pg_ctl -l appends across start attempts)."""
    try:
        with open(log_file, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _log_error(log: str) -> str:
    """The last FATAL/PANIC/ERROR message of a server log without its timestamp prefix, else its last line."""
    errors = [m.group(0).strip() for m in re.finditer(r"\b(?:FATAL|PANIC|ERROR):.*", log)]
    return errors[-1] if errors else _last_line(log) if log.strip() else "(empty server log)"


def _server_env(home: Path) -> dict[str, str]:
    """The caller's environment without PG* variables (PGDATA, PGPORT... would redirect pg_ctl)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", HOME=str(home))
    return env


def _wait_for_connection(url: str, timeout: float) -> sqlalchemy.Engine:
    """An AUTOCOMMIT engine on ``url`` once a connection succeeds (pg_ctl -w already waited for 'ready')."""
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT 1"))
            return engine
        except sqlalchemy.exc.OperationalError as error:
            if time.monotonic() > deadline:
                engine.dispose()
                raise PostgresUnavailable(
                    f"PostgreSQL started but refuses connections: {_last_line(str(error))}"
                ) from None
            time.sleep(0.1)


def _stop(binaries: PostgresBinaries, data_dir: Path, account: _Account, cwd: Path, env: dict[str, str]) -> None:
    """Stop the server in ``data_dir`` if one runs: fast shutdown, then immediate, then SIGKILL of its postmaster."""
    pid_file = data_dir / "postmaster.pid"
    for mode in ("fast", "immediate"):
        if not pid_file.exists():
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            account.run(
                [binaries.tool("pg_ctl"), "stop", "-D", str(data_dir), "-m", mode, "-w", "-t", "30"],
                cwd=cwd,
                env=env,
                timeout=40,
            )
    if pid_file.exists():
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int(pid_file.read_text().split()[0])
            os.kill(postmaster, signal.SIGKILL)


def _start(
    binaries: PostgresBinaries, dialect: str, account: _Account, root: Path, env: dict[str, str], start_timeout: int
) -> str:
    """initdb into ``root``/data, start the server on a free port, wait for it; the server's URL without a database."""
    data_dir = root / "data"
    log_file = root / "server.log"
    _check_traversable(root, account)
    if account.uid is not None:
        os.chown(root, account.uid, account.gid if account.gid is not None else -1)
    init = account.run(
        [
            binaries.tool("initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ],
        cwd=root,
        env=env,
        timeout=180,
    )
    if init.returncode != 0:
        raise PostgresUnavailable(f"initdb failed: {_last_line(init.stderr or init.stdout)}")
    with open(data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# posenas tests (tests/postgres.py)\n")
        conf.writelines(f"{key} = {value}\n" for key, value in _SERVER_SETTINGS.items())

    for attempt in range(_PORT_ATTEMPTS):
        port = _free_port()
        offset = log_file.stat().st_size if log_file.exists() else 0
        start = account.run(
            [
                binaries.tool("pg_ctl"),
                "start",
                "-D",
                str(data_dir),
                "-l",
                str(log_file),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                str(start_timeout),
            ],
            cwd=root,
            env=env,
            timeout=start_timeout + 30,
        )
        if start.returncode == 0:
            return f"{dialect}://{SUPERUSER}@127.0.0.1:{port}"
        log = _log_since(log_file, offset)
        _stop(binaries, data_dir, account, root, env)
        port_taken = "could not bind" in log or "already in use" in log
        if not port_taken or attempt + 1 == _PORT_ATTEMPTS:
            raise PostgresUnavailable(f"PostgreSQL did not start: {_log_error(log)}")
    raise AssertionError("unreachable")


@dataclass
class PostgresServer:
    """A running throwaway server: its database's URL, and ``stop``/``start`` to take it away and bring it
    back on the same port (what a database host's restart looks like to its clients)."""

    url: str
    binaries: PostgresBinaries
    account: _Account
    root: Path
    env: dict[str, str]
    start_timeout: int

    def stop(self) -> None:
        _stop(self.binaries, self.root / "data", self.account, self.root, self.env)

    def start(self) -> None:
        port = re.search(r":(\d+)/", self.url).group(1)  # type: ignore[union-attr]
        started = self.account.run(
            [
                self.binaries.tool("pg_ctl"),
                "start",
                "-D",
                str(self.root / "data"),
                "-l",
                str(self.root / "server.log"),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                str(self.start_timeout),
            ],
            cwd=self.root,
            env=self.env,
            timeout=self.start_timeout + 30,
        )
        if started.returncode != 0:
            raise PostgresUnavailable(f"PostgreSQL did not restart: {_last_line(started.stderr or started.stdout)}")
        _wait_for_connection(self.url, timeout=self.start_timeout).dispose()


@contextlib.contextmanager
def running_postgres(database: str = "posenas_test", *, start_timeout: int = 60) -> Iterator[str]:
    """Start a throwaway PostgreSQL server, create ``database`` and yield its SQLAlchemy URL.

    The URL (``postgresql+psycopg2://postgres@127.0.0.1:<port>/<database>``, or ``+psycopg``) is fit for
    ``optuna.storages.RDBStorage``. The server and its data directory are gone when the block ends, however
    it ends. Raises ``PostgresUnavailable`` (one-line message) when no server can be started.
    """
    with postgres_server(database, start_timeout=start_timeout) as server:
        yield server.url


@contextlib.contextmanager
def postgres_server(database: str = "posenas_test", *, start_timeout: int = 60) -> Iterator[PostgresServer]:
    """``running_postgres``, yielding the server itself (``stop``, ``start``)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", database):
        raise ValueError(f"database name {database!r}: use lower-case letters, digits and _")
    reason = unavailable_reason()
    if reason is not None:
        raise PostgresUnavailable(reason)
    binaries = find_postgres_binaries()
    dialect = sqlalchemy_dialect()
    assert binaries is not None and dialect is not None
    account = _Account.for_server()
    root = Path(tempfile.mkdtemp(prefix="posenas-pg-"))
    env = _server_env(root)
    try:
        try:
            server = _start(binaries, dialect, account, root, env, start_timeout)
            engine = _wait_for_connection(f"{server}/postgres", timeout=start_timeout)
            try:
                with engine.connect() as connection:
                    connection.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
            finally:
                engine.dispose()
        except subprocess.TimeoutExpired as error:
            raise PostgresUnavailable(f"PostgreSQL command timed out: {_last_line(str(error))}") from error
        yield PostgresServer(f"{server}/{database}", binaries, account, root, env, start_timeout)
    finally:
        try:
            _stop(binaries, root / "data", account, root, env)
        finally:
            shutil.rmtree(root, ignore_errors=True)
