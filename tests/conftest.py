"""Shared fixtures. The federation stack runs the real thing: Daphne serving FedML, the
supervisor, and the Flower processes it spawns, all against the test database.

Tiers: `pytest -m "not federation"` is the fast tier (the Django test client, websocket
communicators, a supervisor in a thread, the fake child); tests that start Daphne, the
supervisor process or Flower are marked `federation`. Federation tests run last, and those that
can share one running stack (the `stack` fixture) run after those that need their own."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.stack import SharedStack, Stack, free_port, running_stack, staff_token, wait_until


def pytest_configure(config: pytest.Config) -> None:
    """Tests close database connections after each use: worker threads (database_sync_to_async)
    must not keep the test database open, or it cannot be dropped at the end of the session."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Nor does this process borrow from a connection pool (PostgreSQL's, FEDML_DB_POOL_MAX): a
    # connection an executor thread kept would stay checked out, and later tests would wait for the
    # pool. The servers the tests start (Daphne, the supervisor) run with the pool, as deployed.
    settings.DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
    # PBKDF2's million iterations cost about half a second per user on this machine, and the
    # suite creates hundreds. PBKDF2 stays available for a password a test's subprocess checks
    # (a browser signing in to Daphne), which must be hashed with a hasher that process knows.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """After pytest-django's own ordering: federation tests last, and the ones sharing the
    session's stack after the ones that start their own. While the shared supervisor lives it
    beats (and claims requests) in the test database, so no other test may run beside it."""

    def tier(item: pytest.Item) -> int:
        if "stack" in getattr(item, "fixturenames", ()):
            return 2
        return 1 if item.get_closest_marker("federation") else 0

    items.sort(key=tier)


@pytest.fixture(scope="session", autouse=True)
def _test_database_droppable(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Torn down just before pytest-django drops the test database: a connection an executor
    thread still holds (a websocket test's last database_sync_to_async call) must not make the
    drop fail. Only the test database's other sessions are ended."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )


# Rows that only the models determine: post_migrate writes the same set after every flush.
FLUSH_KEEPS = frozenset({"django_content_type", "auth_permission"})


@pytest.fixture(autouse=True)
def _own_cache(settings: Any) -> None:
    """Each test counts sign-in failures (the rate limit) in a cache of its own: with Redis the
    shared cache would carry one test's (or an earlier run's) failures into the next."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }


@pytest.fixture(scope="session", autouse=True)
def _cheap_flush() -> Iterator[None]:
    """Transactional tests empty every table after each test (about 80 in the fast tier), and two
    things made that cost ~0.25 s a time on PostgreSQL: TRUNCATE, which rewrites every table's
    files, and post_migrate re-inserting every content type and permission. A test's tables hold
    a few rows, which DELETE removes in milliseconds (every foreign key is DEFERRABLE INITIALLY
    DEFERRED, Django's own, so their order inside the flush's transaction does not matter; no
    sequence is reset, as with the TRUNCATE pytest-django asks for); and content types and
    permissions are kept, so post_migrate finds them all in place."""
    from django.core.management.commands import flush

    def flush_sql(style: Any, connection: Any, reset_sequences: bool = True, allow_cascade: bool = False) -> list[str]:
        tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
        tables = [table for table in tables if table not in FLUSH_KEEPS]
        if connection.vendor == "postgresql" and not reset_sequences and not allow_cascade:
            return [
                f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(connection.ops.quote_name(t))};" for t in tables
            ]
        return connection.ops.sql_flush(style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flush, "sql_flush", flush_sql)
        yield


# The one shared stack of this session (None outside the federation tier); see _shared_stack.
_shared: SharedStack | None = None


@pytest.fixture(scope="session")
def _shared_stack(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedStack]:
    global _shared
    _shared = SharedStack(tmp_path_factory.mktemp("shared"), django_db_blocker)
    try:
        yield _shared
    finally:
        _shared.close()
        _shared = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests are ordered so that this never acts (see pytest_collection_modifyitems). Under another
    order, a test that does not use the shared stack must not run beside its supervisor, which
    would claim that test's requests (or those of the test's own supervisor) and beat in its
    tables. Before any fixture, so before pytest-django opens the test's transaction."""
    if _shared is None or _shared.stack is None or "stack" in getattr(item, "fixturenames", ()):
        return
    from django.core.management import call_command

    _shared.close()
    with _shared.blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)  # what it wrote since the last test's flush


@pytest.fixture
def api_client(db: None) -> Any:
    """A DRF client signed in as staff (who may do everything the API offers)."""
    from tests.factories import staff_api_client

    return staff_api_client()


@pytest.fixture
def alive(settings: Any, db: None) -> None:
    """A supervisor looks alive; none runs, so nothing would ever be spawned."""
    from tests.factories import SupervisorHeartbeatFactory

    settings.START_WAIT_SECONDS = 0.5
    SupervisorHeartbeatFactory()


@pytest.fixture
def stack(transactional_db: None, _shared_stack: SharedStack) -> Iterator[Stack]:
    """The session's shared stack (see SharedStack), ready: a live supervisor and a staff token."""
    from accounts import services as accounts_services

    s = _shared_stack.get()
    accounts_services.coordinator_node_ensure()
    accounts_services.participant_node_ensure()
    s.token = staff_token()
    wait_until(
        lambda: s.get("/health")[1].get("supervisor_alive"),
        timeout=30,
        message="the supervisor's heartbeat, back since the last test emptied the tables",
    )
    yield s
    if not s.alive():
        _shared_stack.close()
        return
    try:
        s.quiesce()
    except BaseException:
        _shared_stack.close()
        raise


@pytest.fixture
def own_stack(transactional_db: None, tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own, for a test that cannot leave a shared one as it found it."""
    with running_stack(tmp_path) as s:
        yield s


@pytest.fixture
def supervisor_in_thread(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[Any]:
    """A real Supervisor running its loop in a thread of this process, on its own data dirs."""
    import threading

    from orchestration import selectors
    from orchestration.supervisor import FlowerLauncher, Supervisor

    settings.DATA_DIR = tmp_path / "var"
    settings.LOG_DIR = tmp_path / "logs"
    settings.FLWR_HOME_ROOT = tmp_path / "var" / "flwr_home"
    settings.ARTIFACTS_DIR = tmp_path / "var" / "artifacts"
    settings.CERTIFICATES_DIR = tmp_path / "var" / "certificates"
    sup = Supervisor(launcher=FlowerLauncher())
    stop = threading.Event()

    def serve() -> None:
        try:
            sup.run_forever(stop)
        finally:
            connection.close()

    loop = threading.Thread(target=serve, name="supervisor", daemon=True)
    loop.start()
    wait_until(lambda: selectors.supervisor_is_alive(sup.id), timeout=10, message="the supervisor's heartbeat")
    try:
        yield sup
    finally:
        stop.set()
        loop.join(60)


@pytest.fixture
def flower_missing(settings: Any, tmp_path: Path) -> None:
    """The supervisor finds no Flower binaries: every spawn fails as on a broken install."""
    settings.START_WAIT_SECONDS = 5.0
    settings.FLOWER_BIN_DIR = tmp_path / "no-flower-here"
    settings.FLOWER_BIN_DIR.mkdir()


@pytest.fixture
def make_supervisor(settings: Any, tmp_path: Path) -> Iterator[Any]:
    """`make(launcher)`: supervisors writing under the test's tmp_path (a module may override it)."""
    from tests.supervisor_kit import started_supervisors, use_own_dirs  # imports Django models

    use_own_dirs(settings, tmp_path)
    yield from started_supervisors()


@pytest.fixture
def superlink_port() -> Iterator[int]:
    """A port where something accepts connections, as a SuperLink's would."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        yield port
