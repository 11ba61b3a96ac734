"""End-to-end test: the langsmith Python SDK, unchanged, through the Portcullis gateway.

The fixtures start three processes on 127.0.0.1: the fake LangSmith API
(fake_langsmith.py), httpbin under gunicorn, and the gateway binary named by
$PORTCULLIS_BIN. The SDK and plain HTTP clients talk only to the gateway; the
tests then read what the upstreams received.

Endpoints that the pinned SDK (langsmith 0.15.1, see requirements.txt) calls,
read from langsmith/client.py and langsmith/_internal/_background_thread.py:

- Client(auto_batch_tracing=True), the default, starts a background thread
  that reads GET /info once to choose the run ingest endpoint.
- create_project: POST /sessions with a JSON body holding the name and a
  client-generated UUID.
- read_project(project_name=...): GET /sessions?limit=1&name=...
- list_datasets: GET /datasets?limit=100&offset=0, then, when a dataset came
  back, GET /sessions?limit=1 once to learn the tenant id.
- create_run and update_run with trace_id and dotted_order, under auto batch
  tracing: queued, then sent by the background thread as POST /runs/multipart.
  That is the default when /info's batch_ingest_config.use_multipart_endpoint
  is true or absent. The SDK falls back to POST /runs/batch only after
  /runs/multipart returns 404. Client.flush() waits until the queue is sent.
- create_run and update_run with auto_batch_tracing=False: POST /runs and
  PATCH /runs/{run_id}, sent before the call returns.
- batch_ingest_runs: POST /runs/batch, sent before the call returns.
- Run ingest failures are logged and passed to tracing_error_callback, not
  raised, so the tests collect them through that callback.
- A 401 response raises langsmith.utils.LangSmithAuthError.

Run from the repository root (scripts/e2e-setup.sh prints the venv path):
    PORTCULLIS_BIN=/path/to/portcullis "$(scripts/e2e-setup.sh)/bin/python" -m pytest tests/e2e
"""

import datetime
import json
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from urllib3.util.retry import Retry

import langsmith
from langsmith.utils import LangSmithAuthError, LangSmithError

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"

# Bounds on waiting for a started process to accept connections.
STARTUP_TIMEOUT_SECONDS = 20.0
# Timeout for each plain HTTP request a test sends.
HTTP_TIMEOUT_SECONDS = 10.0
# The SDK's (connect, read) timeouts, in milliseconds.
SDK_TIMEOUT_MS = (2_000, 10_000)
# Upper bound on Client.flush() and Client.cleanup() waiting for queued runs.
SDK_FLUSH_TIMEOUT_SECONDS = 20.0

PAT_PATTERN = re.compile(r"^lsv2_pt_[0-9a-f]{32}_[0-9a-f]{10}$")

# Identity headers the gateway adds to every authenticated request it forwards.
IDENTITY_HEADERS = (
    "x-auth-user-id",
    "x-auth-org-id",
    "x-auth-workspace-id",
    "x-tenant-id",
    "x-auth-role",
    "x-auth-permissions",
    "x-auth-key-id",
    "x-auth-key-kind",
)
CREDENTIAL_HEADERS = ("x-api-key", "authorization")


@dataclass(frozen=True)
class Route:
    id: str
    path: str
    methods: tuple
    permission: str
    upstream: str
    strip_prefix: str = ""


# The gateway's route table for this test. Rules must not overlap, so each
# (method, path) pair is matched by at most one of them.
ROUTES = (
    Route("info", "/info", ("GET",), "public", "langsmith"),
    Route("sessions-create", "/sessions", ("POST",), "projects:create", "langsmith"),
    Route("sessions-read", "/sessions/**", ("GET",), "projects:read", "langsmith"),
    Route("datasets-read", "/datasets/**", ("GET",), "datasets:read", "langsmith"),
    Route("runs-create", "/runs", ("POST",), "runs:create", "langsmith"),
    Route("runs-batch", "/runs/batch", ("POST",), "runs:create", "langsmith"),
    Route("runs-multipart", "/runs/multipart", ("POST",), "runs:create", "langsmith"),
    Route("runs-update", "/runs/{run_id}", ("PATCH",), "runs:create", "langsmith"),
    Route(
        "httpbin", "/httpbin/**", ("GET", "POST"), "runs:create", "httpbin", "/httpbin"
    ),
)


def route_matches(pattern, path):
    """Match a path against a gateway pattern: literals, {name} and a trailing **."""
    pattern_segments = pattern.strip("/").split("/")
    path_segments = path.strip("/").split("/") if path.strip("/") else []
    if pattern_segments[-1] == "**":
        prefix = pattern_segments[:-1]
        if len(path_segments) < len(prefix):
            return False
        path_segments = path_segments[: len(prefix)]
        pattern_segments = prefix
    if len(pattern_segments) != len(path_segments):
        return False
    for expected, actual in zip(pattern_segments, path_segments):
        if expected.startswith("{") and expected.endswith("}"):
            continue
        if expected != actual:
            return False
    return True


def permission_for(method, path):
    """Return the permission of the langsmith route that serves method and path."""
    for route in ROUTES:
        if (
            route.upstream == "langsmith"
            and method in route.methods
            and route_matches(route.path, path)
        ):
            return route.permission
    raise AssertionError(f"no route in ROUTES serves {method} {path}")


def toml_string(value):
    # A JSON string literal is a valid TOML basic string.
    return json.dumps(value)


def render_config(listen_port, store_path, langsmith_url, httpbin_url):
    """Render the gateway's TOML configuration for this test."""
    lines = [
        "[server]",
        f"listen = {toml_string(f'{LOOPBACK}:{listen_port}')}",
        "",
        "[metrics]",
        # Port 0: each gateway of the run gets its own metrics port.
        f"listen = {toml_string(f'{LOOPBACK}:0')}",
        "",
        "[admin]",
        # Port 0 here too: the admin API listens next to each gateway.
        f"listen = {toml_string(f'{LOOPBACK}:0')}",
        "",
        "[store]",
        # sqlite:// followed by an absolute path, which starts with "/".
        f"url = {toml_string(f'sqlite://{store_path}')}",
        "bootstrap = false",
        "",
        "[[upstreams]]",
        'name = "langsmith"',
        f"url = {toml_string(langsmith_url)}",
        'connect_timeout = "2s"',
        'timeout = "30s"',
        "",
        "[[upstreams]]",
        'name = "httpbin"',
        f"url = {toml_string(httpbin_url)}",
    ]
    for route in ROUTES:
        lines += [
            "",
            "[[routes]]",
            f"id = {toml_string(route.id)}",
            f"path = {toml_string(route.path)}",
            f"methods = [{', '.join(toml_string(m) for m in route.methods)}]",
            f"permission = {toml_string(route.permission)}",
            f"upstream = {toml_string(route.upstream)}",
        ]
        if route.strip_prefix:
            lines.append(f"strip_prefix = {toml_string(route.strip_prefix)}")
    return "\n".join(lines) + "\n"


# Processes


def free_loopback_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Another process can take the port before the caller binds it. The gateway
    reads its port from the config file, so this race cannot be avoided for it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def read_log(path, max_chars=8000):
    """Return the end of a process log file, for failure messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "<no log file>"
    return text[-max_chars:] if text else "<empty>"


def stop_process(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_for_tcp(port, process, name, log_path):
    """Connect to 127.0.0.1:port until it accepts, failing if the process exits first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        exit_code = process.poll()
        if exit_code is not None:
            pytest.fail(
                f"{name} exited with status {exit_code} before listening on port {port}.\n"
                f"{name} log ({log_path}):\n{read_log(log_path)}",
                pytrace=False,
            )
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"{name} did not accept connections on {LOOPBACK}:{port} within "
                f"{STARTUP_TIMEOUT_SECONDS:.0f} s.\n{name} log ({log_path}):\n{read_log(log_path)}",
                pytrace=False,
            )
        time.sleep(0.1)


@dataclass
class FakeUpstream:
    url: str

    def requests(self):
        """Return every request the fake LangSmith API has received, oldest first."""
        response = requests.get(f"{self.url}/__requests", timeout=HTTP_TIMEOUT_SECONDS)
        response.raise_for_status()
        return response.json()

    def requests_since(self, mark):
        return self.requests()[mark:]

    def mark(self):
        return len(self.requests())


@dataclass
class Gateway:
    url: str
    organization_id: str
    workspace_id: str
    user_id: str
    key_id: str
    api_key: str
    log_path: Path

    def log(self):
        return read_log(self.log_path)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("portcullis-e2e")


@pytest.fixture(scope="module", autouse=True)
def sdk_environment(work_dir):
    """Keep the SDK on loopback: no tracing from the environment, no profile, no proxy."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("LANGSMITH_", "LANGCHAIN_")) or name.lower().endswith(
                "_proxy"
            ):
                patch.delenv(name)
        patch.setenv("LANGSMITH_TRACING", "false")
        patch.setenv("LANGSMITH_TEST_TRACKING", "false")
        # The SDK warns when the server does not advertise zstd compression, as
        # the fake upstream does not. Turning compression off skips that check.
        patch.setenv("LANGSMITH_DISABLE_RUN_COMPRESSION", "true")
        # A CLI profile in ~/.langsmith/config.json would otherwise supply a key.
        patch.setenv(
            "LANGSMITH_CONFIG_FILE", str(work_dir / "no-langsmith-profile.json")
        )
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield


@pytest.fixture(scope="module")
def fake_upstream(work_dir):
    log_path = work_dir / "fake_langsmith.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "fake_langsmith.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_SECONDS)
        first_line = process.stdout.readline().strip() if ready else ""
        match = re.fullmatch(r"listening 127\.0\.0\.1:(\d+)", first_line)
        if match is None:
            pytest.fail(
                f"fake LangSmith API did not report its port (first stdout line {first_line!r}).\n"
                f"log ({log_path}):\n{read_log(log_path)}",
                pytrace=False,
            )
        yield FakeUpstream(url=f"http://{LOOPBACK}:{match.group(1)}")
    finally:
        stop_process(process)
        process.stdout.close()


@pytest.fixture(scope="module")
def httpbin_url(work_dir):
    # gunicorn takes the already-listening socket by file descriptor, so the
    # OS-picked port cannot be taken by another process in between.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    log_path = work_dir / "httpbin.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"fd://{listener.fileno()}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--log-level",
                "warning",
                "httpbin:app",
            ],
            pass_fds=(listener.fileno(),),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work_dir,
        )
    listener.close()
    try:
        url = f"http://{LOOPBACK}:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"httpbin exited with status {process.returncode}.\n{read_log(log_path)}",
                    pytrace=False,
                )
            try:
                if requests.get(f"{url}/get", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"httpbin did not answer GET /get on {url}.\n{read_log(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def gateway(work_dir, fake_upstream, httpbin_url):
    binary = os.environ.get("PORTCULLIS_BIN")
    if not binary:
        pytest.fail(
            "PORTCULLIS_BIN is not set: set it to the gateway binary, e.g. "
            "PORTCULLIS_BIN=target/debug/portcullis after `cargo build`",
            pytrace=False,
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(
            f"PORTCULLIS_BIN={binary!r} is not an executable file; run `cargo build` first",
            pytrace=False,
        )

    port = free_loopback_port()
    config_path = work_dir / "portcullis.toml"
    config_path.write_text(
        render_config(port, work_dir / "portcullis.db", fake_upstream.url, httpbin_url)
    )

    init = subprocess.run(
        [binary, "init", "--config", str(config_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=work_dir,
    )
    if init.returncode != 0:
        pytest.fail(
            f"`portcullis init` exited with status {init.returncode}.\n"
            f"stdout:\n{init.stdout}\nstderr:\n{init.stderr}",
            pytrace=False,
        )
    try:
        created = json.loads(init.stdout)
    except ValueError as error:
        pytest.fail(
            f"`portcullis init --json` printed invalid JSON ({error}):\n{init.stdout}",
            pytrace=False,
        )
    for field in ("organization_id", "workspace_id", "user_id", "key_id", "api_key"):
        assert (
            isinstance(created.get(field), str) and created[field]
        ), f"init output has no {field}: {created}"
    assert PAT_PATTERN.fullmatch(
        created["api_key"]
    ), f"init printed a key of unexpected form: {created['api_key']!r}"

    log_path = work_dir / "portcullis-serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "serve", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work_dir,
        )
    try:
        wait_for_tcp(port, process, "portcullis serve", log_path)
        yield Gateway(
            url=f"http://{LOOPBACK}:{port}",
            organization_id=created["organization_id"],
            workspace_id=created["workspace_id"],
            user_id=created["user_id"],
            key_id=created["key_id"],
            api_key=created["api_key"],
            log_path=log_path,
        )
    finally:
        stop_process(process)


@pytest.fixture
def make_client(gateway):
    """Yield a factory for SDK clients pointed at the gateway, and clean the clients up afterwards."""
    clients = []

    def make(api_key, **options):
        options.setdefault("workspace_id", gateway.workspace_id)
        client = langsmith.Client(
            api_url=gateway.url,
            api_key=api_key,
            timeout_ms=SDK_TIMEOUT_MS,
            # No transport retries: a failing gateway should fail the test at once.
            retry_config=Retry(total=0, raise_on_status=False, raise_on_redirect=False),
            **options,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.cleanup(timeout=SDK_FLUSH_TIMEOUT_SECONDS)


# Checks on what the upstream received


def header_values(record, name):
    return [value for header, value in record["headers"] if header == name]


def describe(record):
    query = f"?{record['query']}" if record["query"] else ""
    return f"{record['method']} {record['path']}{query}"


def assert_no_credentials(records, secrets_to_hide):
    """Check that no forwarded request carries a credential header or a key string."""
    for record in records:
        for name in CREDENTIAL_HEADERS:
            values = header_values(record, name)
            assert (
                values == []
            ), f"{describe(record)} reached the upstream with {name}: {values}"
        for header, value in record["headers"]:
            for secret in secrets_to_hide:
                assert (
                    secret not in value
                ), f"{describe(record)} reached the upstream with a key in header {header}"


def assert_identity(record, gateway):
    """Check the identity headers on one authenticated request the fake upstream received."""
    where = describe(record)
    for name in IDENTITY_HEADERS:
        values = header_values(record, name)
        assert len(values) == 1, f"{where}: expected one {name} header, got {values}"

    def value(name):
        return header_values(record, name)[0]

    assert (
        value("x-auth-workspace-id") == gateway.workspace_id
    ), f"{where}: x-auth-workspace-id"
    assert value("x-tenant-id") == gateway.workspace_id, f"{where}: x-tenant-id"
    assert value("x-auth-user-id") == gateway.user_id, f"{where}: x-auth-user-id"
    assert value("x-auth-org-id") == gateway.organization_id, f"{where}: x-auth-org-id"
    assert value("x-auth-key-id") == gateway.key_id, f"{where}: x-auth-key-id"
    assert value("x-auth-key-kind") == "pat", f"{where}: x-auth-key-kind"
    assert value("x-auth-role"), f"{where}: x-auth-role is empty"
    permissions = value("x-auth-permissions").split(",")
    required = permission_for(record["method"], record["path"])
    assert (
        required in permissions
    ), f"{where}: x-auth-permissions {permissions} lacks {required}"


def key_secrets(api_key):
    """Return the strings of a key that must never reach an upstream: the key and its secret part."""
    return [api_key, api_key.split("_")[2]]


def assert_forwarded_with_identity(records, gateway):
    assert_no_credentials(records, key_secrets(gateway.api_key))
    for record in records:
        if permission_for(record["method"], record["path"]) != "public":
            assert_identity(record, gateway)


def find(records, method, path):
    return [
        record
        for record in records
        if record["method"] == method and record["path"] == path
    ]


def new_trace_fields(start_time):
    """Return id, trace_id and dotted_order for a root run, as the SDK's run trees build them."""
    run_id = uuid.uuid4()
    dotted_order = f"{start_time.strftime('%Y%m%dT%H%M%S%fZ')}{run_id}"
    return {"id": run_id, "trace_id": run_id, "dotted_order": dotted_order}


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


# Tests


def test_public_info_without_key(gateway, fake_upstream):
    mark = fake_upstream.mark()

    response = requests.get(f"{gateway.url}/info", timeout=HTTP_TIMEOUT_SECONDS)

    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    assert response.json()["version"] == "0.0.0-fake"
    records = fake_upstream.requests_since(mark)
    assert [describe(record) for record in records] == ["GET /info"]
    assert_no_credentials(records, key_secrets(gateway.api_key))


def test_sdk_traces_through_gateway(gateway, fake_upstream, make_client):
    mark = fake_upstream.mark()
    ingest_errors = []
    client = make_client(gateway.api_key, tracing_error_callback=ingest_errors.append)
    project_name = f"e2e-project-{uuid.uuid4().hex[:8]}"

    project = client.create_project(
        project_name, description="created through the gateway"
    )

    assert project.name == project_name
    # The fake upstream takes tenant_id from the X-Tenant-Id header it received.
    assert str(project.tenant_id) == gateway.workspace_id

    start_time = utc_now()
    trace = new_trace_fields(start_time)
    client.create_run(
        "e2e-run",
        {"question": "What is 2 + 2?"},
        "chain",
        project_name=project_name,
        start_time=start_time,
        **trace,
    )
    client.update_run(
        trace["id"],
        outputs={"answer": "4"},
        end_time=utc_now(),
        trace_id=trace["trace_id"],
        dotted_order=trace["dotted_order"],
    )
    client.flush(timeout=SDK_FLUSH_TIMEOUT_SECONDS)

    datasets = list(client.list_datasets())

    assert [dataset.name for dataset in datasets] == ["e2e-dataset"]
    assert ingest_errors == []

    records = fake_upstream.requests_since(mark)
    seen = [describe(record) for record in records]
    assert find(records, "GET", "/info"), f"no GET /info among {seen}"
    assert find(records, "POST", "/sessions"), f"no POST /sessions among {seen}"
    assert find(records, "GET", "/datasets"), f"no GET /datasets among {seen}"
    ingests = find(records, "POST", "/runs/multipart")
    assert ingests, f"no POST /runs/multipart among {seen}"
    assert str(trace["id"]) in {
        run_id for record in ingests for run_id in record["run_ids"]
    }
    assert all(
        record["content_type"].startswith("multipart/form-data") for record in ingests
    )
    assert_forwarded_with_identity(records, gateway)


def test_sdk_unbatched_run_ingest(gateway, fake_upstream, make_client):
    mark = fake_upstream.mark()
    ingest_errors = []
    client = make_client(
        gateway.api_key,
        auto_batch_tracing=False,
        tracing_error_callback=ingest_errors.append,
    )
    project_name = f"e2e-unbatched-{uuid.uuid4().hex[:8]}"
    client.create_project(project_name)

    assert client.read_project(project_name=project_name).name == project_name

    run_id = uuid.uuid4()
    client.create_run(
        "e2e-llm-run", {"prompt": "hi"}, "llm", project_name=project_name, id=run_id
    )
    client.update_run(run_id, outputs={"completion": "hello"}, end_time=utc_now())

    start_time = utc_now()
    batch_trace = new_trace_fields(start_time)
    client.batch_ingest_runs(
        create=[
            {
                "id": str(batch_trace["id"]),
                "trace_id": str(batch_trace["trace_id"]),
                "dotted_order": batch_trace["dotted_order"],
                "name": "e2e-batch-run",
                "run_type": "tool",
                "inputs": {"x": 1},
                "start_time": start_time,
                "session_name": project_name,
            }
        ]
    )

    assert ingest_errors == []
    records = fake_upstream.requests_since(mark)
    seen = [describe(record) for record in records]
    reads = [
        record
        for record in find(records, "GET", "/sessions")
        if parse_qs(record["query"]).get("name") == [project_name]
    ]
    assert reads, f"no GET /sessions?name={project_name} among {seen}"
    posts = find(records, "POST", "/runs")
    assert [record["run_ids"] for record in posts] == [[str(run_id)]], seen
    patches = find(records, "PATCH", f"/runs/{run_id}")
    assert len(patches) == 1, seen
    batches = find(records, "POST", "/runs/batch")
    assert [record["run_ids"] for record in batches] == [[str(batch_trace["id"])]], seen
    assert_forwarded_with_identity(records, gateway)


def tampered(api_key):
    """Return api_key with one hex digit of its secret part changed."""
    index = len("lsv2_pt_")
    digit = "0" if api_key[index] != "0" else "1"
    return api_key[:index] + digit + api_key[index + 1 :]


WRONG_KEYS = {
    "unknown": lambda key: f"lsv2_pt_{secrets.token_hex(16)}_{secrets.token_hex(5)}",
    "tampered": tampered,
    "malformed": lambda key: "not-a-portcullis-key",
    "missing": lambda key: None,
}


@pytest.mark.parametrize("case", sorted(WRONG_KEYS))
def test_sdk_wrong_key_auth_error(case, gateway, fake_upstream, make_client):
    wrong_key = WRONG_KEYS[case](gateway.api_key)
    mark = fake_upstream.mark()
    client = make_client(wrong_key, auto_batch_tracing=False)

    with pytest.raises(LangSmithAuthError):
        client.create_project(f"e2e-denied-{uuid.uuid4().hex[:8]}")
    with pytest.raises(LangSmithAuthError):
        list(client.list_datasets())

    records = fake_upstream.requests_since(mark)
    assert (
        records == []
    ), f"rejected requests reached the upstream: {[describe(r) for r in records]}"


def test_rejected_key_json_error(gateway, fake_upstream):
    wrong_key = WRONG_KEYS["unknown"](gateway.api_key)
    mark = fake_upstream.mark()

    response = requests.get(
        f"{gateway.url}/datasets",
        headers={"x-api-key": wrong_key, "x-tenant-id": gateway.workspace_id},
        timeout=HTTP_TIMEOUT_SECONDS,
    )

    assert response.status_code == 401, response.text
    assert response.headers.get("content-type", "").startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str), body
    assert wrong_key not in response.text
    assert fake_upstream.requests_since(mark) == []


def test_httpbin_echo_shows_identity(gateway):
    run = {
        "id": str(uuid.uuid4()),
        "name": "httpbin-run",
        "run_type": "chain",
        "inputs": {"question": "What is 2 + 2?"},
        "start_time": utc_now().isoformat(),
    }

    # show_env=1 stops httpbin hiding proxy-related headers from the echo.
    response = requests.post(
        f"{gateway.url}/httpbin/anything/runs?show_env=1",
        json=run,
        headers={"x-api-key": gateway.api_key, "x-tenant-id": gateway.workspace_id},
        timeout=HTTP_TIMEOUT_SECONDS,
    )

    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    echo = response.json()
    assert echo["method"] == "POST"
    assert urlsplit(echo["url"]).path == "/anything/runs"
    assert echo["json"] == run
    headers = {name.lower(): value for name, value in echo["headers"].items()}
    assert headers.get("x-auth-workspace-id") == gateway.workspace_id
    assert headers.get("x-tenant-id") == gateway.workspace_id
    assert headers.get("x-auth-user-id") == gateway.user_id
    assert headers.get("x-auth-org-id") == gateway.organization_id
    assert headers.get("x-auth-key-id") == gateway.key_id
    assert headers.get("x-auth-key-kind") == "pat"
    assert headers.get("x-auth-role")
    assert "runs:create" in headers.get("x-auth-permissions", "").split(",")
    assert "x-api-key" not in headers
    assert "authorization" not in headers
    for secret in key_secrets(gateway.api_key):
        assert all(secret not in value for value in headers.values())


def test_httpbin_bearer_key_removed(gateway):
    response = requests.post(
        f"{gateway.url}/httpbin/anything/runs?show_env=1",
        json={"name": "bearer-run"},
        headers={
            "Authorization": f"Bearer {gateway.api_key}",
            "x-tenant-id": gateway.workspace_id,
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )

    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    headers = {
        name.lower(): value for name, value in response.json()["headers"].items()
    }
    assert "authorization" not in headers
    assert headers.get("x-auth-user-id") == gateway.user_id
    assert headers.get("x-auth-key-kind") == "pat"
    for secret in key_secrets(gateway.api_key):
        assert all(secret not in value for value in headers.values())


def test_httpbin_query_string_forwarded(gateway):
    response = requests.get(
        f"{gateway.url}/httpbin/get",
        params={"run": "r1", "tag": ["a", "b"]},
        headers={"x-api-key": gateway.api_key, "x-tenant-id": gateway.workspace_id},
        timeout=HTTP_TIMEOUT_SECONDS,
    )

    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    echo = response.json()
    assert urlsplit(echo["url"]).path == "/get"
    assert echo["args"] == {"run": "r1", "tag": ["a", "b"]}


def test_client_identity_headers_replaced(gateway, fake_upstream):
    base_headers = {"x-api-key": gateway.api_key, "x-tenant-id": gateway.workspace_id}
    foreign_workspace = str(uuid.uuid4())
    spoofed_headers = {
        "X-Auth-Role": "admin",
        "X-Auth-User-Id": "spoofed-user",
        "X-Auth-Org-Id": "spoofed-org",
        "X-Auth-Workspace-Id": foreign_workspace,
        "X-Auth-Permissions": "spoofed:all",
        "X-Auth-Key-Id": "spoofed-key",
        "X-Auth-Key-Kind": "service",
        "X-Auth-Service-Account-Id": "spoofed-service-account",
    }
    mark = fake_upstream.mark()

    baseline = requests.get(
        f"{gateway.url}/datasets",
        params={"probe": "baseline"},
        headers=base_headers,
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    spoofed = requests.get(
        f"{gateway.url}/datasets",
        params={"probe": "spoofed"},
        headers={**base_headers, **spoofed_headers},
        timeout=HTTP_TIMEOUT_SECONDS,
    )

    assert baseline.status_code == 200, baseline.text
    records = fake_upstream.requests_since(mark)
    baseline_records = [
        r for r in records if parse_qs(r["query"]).get("probe") == ["baseline"]
    ]
    spoofed_records = [
        r for r in records if parse_qs(r["query"]).get("probe") == ["spoofed"]
    ]
    assert len(baseline_records) == 1, [describe(r) for r in records]
    if spoofed.status_code >= 400:
        # Rejecting the request is also safe, provided nothing was forwarded.
        assert (
            spoofed_records == []
        ), f"spoofed request rejected with {spoofed.status_code} but forwarded"
        return
    assert spoofed.status_code == 200, spoofed.text
    assert len(spoofed_records) == 1, [describe(r) for r in records]
    record = spoofed_records[0]
    assert_identity(record, gateway)
    # The role comes from the key's grant, whatever the client sent.
    assert header_values(record, "x-auth-role") == header_values(
        baseline_records[0], "x-auth-role"
    )
    assert header_values(record, "x-auth-key-kind") == ["pat"]
    for header, value in record["headers"]:
        assert (
            "spoofed" not in value
        ), f"client value reached the upstream in {header}: {value}"
        assert (
            foreign_workspace not in value
        ), f"client workspace reached the upstream in {header}"


def test_sdk_custom_role_header_replaced(gateway, fake_upstream, make_client):
    mark = fake_upstream.mark()
    # Client(headers=...) adds these to every request the SDK sends.
    custom_headers = {"X-Auth-Role": "admin", "X-Auth-User-Id": "spoofed-user"}
    client = make_client(
        gateway.api_key, auto_batch_tracing=False, headers=custom_headers
    )

    outcome = None
    try:
        list(client.list_datasets())
    except LangSmithError as error:
        outcome = error

    records = [
        r for r in fake_upstream.requests_since(mark) if r["path"] == "/datasets"
    ]
    if outcome is not None:
        assert records == [], f"SDK request failed ({outcome}) but reached the upstream"
        return
    assert len(records) == 1, [describe(r) for r in records]
    assert_identity(records[0], gateway)
    baseline = requests.get(
        f"{gateway.url}/datasets",
        headers={"x-api-key": gateway.api_key, "x-tenant-id": gateway.workspace_id},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert baseline.status_code == 200, baseline.text
    baseline_record = fake_upstream.requests()[-1]
    assert header_values(records[0], "x-auth-role") == header_values(
        baseline_record, "x-auth-role"
    )
    for header, value in records[0]["headers"]:
        assert (
            "spoofed" not in value
        ), f"client value reached the upstream in {header}: {value}"


def test_sdk_without_workspace_id(gateway, fake_upstream, make_client):
    # A key that reaches only one workspace needs no X-Tenant-Id, because the
    # gateway then forwards to that workspace.
    mark = fake_upstream.mark()
    client = make_client(gateway.api_key, auto_batch_tracing=False, workspace_id=None)

    datasets = list(client.list_datasets())

    assert [dataset.name for dataset in datasets] == ["e2e-dataset"]
    records = find(fake_upstream.requests_since(mark), "GET", "/datasets")
    assert len(records) == 1
    assert_forwarded_with_identity(records, gateway)


def test_unrouted_path_not_forwarded(gateway, fake_upstream):
    mark = fake_upstream.mark()
    headers = {"x-api-key": gateway.api_key, "x-tenant-id": gateway.workspace_id}

    unknown_path = requests.get(
        f"{gateway.url}/feedback", headers=headers, timeout=HTTP_TIMEOUT_SECONDS
    )
    unknown_method = requests.delete(
        f"{gateway.url}/datasets", headers=headers, timeout=HTTP_TIMEOUT_SECONDS
    )

    assert unknown_path.status_code == 404, unknown_path.text
    assert unknown_method.status_code in (404, 405), unknown_method.text
    for response in (unknown_path, unknown_method):
        assert isinstance(response.json().get("error"), str), response.text
    assert fake_upstream.requests_since(mark) == []


def test_foreign_tenant_id_not_forwarded(gateway, fake_upstream):
    foreign_workspace = str(uuid.uuid4())
    mark = fake_upstream.mark()

    response = requests.get(
        f"{gateway.url}/datasets",
        headers={"x-api-key": gateway.api_key, "x-tenant-id": foreign_workspace},
        timeout=HTTP_TIMEOUT_SECONDS,
    )

    records = fake_upstream.requests_since(mark)
    if response.status_code >= 400:
        assert (
            records == []
        ), f"request rejected with {response.status_code} but forwarded"
        body = response.json()
        assert isinstance(body.get("error"), str), body
        return
    assert len(records) == 1, [describe(r) for r in records]
    assert header_values(records[0], "x-tenant-id") == [gateway.workspace_id]
    for header, value in records[0]["headers"]:
        assert (
            foreign_workspace not in value
        ), f"foreign workspace id reached the upstream in {header}"
