#!/usr/bin/env python3
"""Fake LangSmith API for the Portcullis end-to-end test (stdlib only).

It serves the subset of the LangSmith REST API that the langsmith Python SDK
calls in tests/e2e/test_langsmith_sdk.py, with response bodies in the shapes
the SDK's pydantic models parse (checked against langsmith 0.15.1). It keeps
projects in memory and records every request, which the test reads back from
GET /__requests to check what the gateway forwarded.

Usage: fake_langsmith.py --port 0
The first line on stdout is "listening 127.0.0.1:PORT" with the bound port.
"""

import argparse
import datetime
import json
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"

# Used as tenant_id when a request has no X-Tenant-Id that parses as a UUID.
DEFAULT_TENANT_ID = "00000000-0000-4000-8000-000000000001"

DATASET = {
    "id": "5d1b5c4e-7a53-4a8e-9d3c-6f0e2b9a1c11",
    "name": "e2e-dataset",
    "description": "Dataset returned by the fake LangSmith API",
    "data_type": "kv",
    "created_at": "2025-01-01T00:00:00+00:00",
    "modified_at": "2025-01-01T00:00:00+00:00",
    "example_count": 0,
    "session_count": 0,
    "metadata": None,
}

# batch_ingest_config turns on the SDK's /runs/multipart ingest path.
# zstd_compression_enabled is false so the SDK sends plain multipart bodies.
INFO = {
    "version": "0.0.0-fake",
    "license_expiration_time": None,
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20971520,
    },
    "instance_flags": {"zstd_compression_enabled": False},
}

# Multipart ingest names each part "<post|patch>.<run id>[.<field>]".
MULTIPART_RUN_PART = re.compile(rb'name="(?:post|patch)\.([0-9a-fA-F-]{36})')

MAX_BODY_BYTES = 64 * 1024 * 1024


def utc_now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def parse_uuid(value):
    """Return value as a canonical UUID string, or None if it is not a UUID."""
    try:
        return str(uuid.UUID(str(value)))
    except (TypeError, ValueError, AttributeError):
        return None


class State:
    """Projects and the request log, shared by all handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.sessions = {}

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)

    def request_log(self):
        with self.lock:
            return list(self.requests)


def extract_run_ids(path, content_type, body):
    """Find the ids of the runs that a run ingest request carries."""
    if path != "/runs" and not path.startswith("/runs/"):
        return []
    if path == "/runs/multipart":
        return sorted({match.decode() for match in MULTIPART_RUN_PART.findall(body)})
    if not body or "json" not in content_type:
        return []
    try:
        payload = json.loads(body)
    except ValueError:
        return []
    if path == "/runs/batch" and isinstance(payload, dict):
        runs = list(payload.get("post") or []) + list(payload.get("patch") or [])
        return sorted({str(run.get("id")) for run in runs if isinstance(run, dict)})
    if isinstance(payload, dict) and "id" in payload:
        return [str(payload["id"])]
    return []


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 lets the gateway reuse connections, so every response must send
    # Content-Length.
    protocol_version = "HTTP/1.1"
    server_version = "fake-langsmith/1"
    state = None  # set by main()

    def do_GET(self):
        self.handle_request()

    def do_POST(self):
        self.handle_request()

    def do_PATCH(self):
        self.handle_request()

    def do_PUT(self):
        self.handle_request()

    def do_DELETE(self):
        self.handle_request()

    def read_body(self):
        """Read the request body, by Content-Length or chunked transfer coding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # Skip trailer fields up to the blank line that ends the body.
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError(f"chunked body exceeds {MAX_BODY_BYTES} bytes")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"Content-Length {length} exceeds {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def send_json(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_request(self):
        url = urlsplit(self.path)
        path = url.path
        query = parse_qs(url.query)
        try:
            body = self.read_body()
        except ValueError as error:
            sys.stderr.write(
                f"fake-langsmith: invalid body in {self.command} {path}: {error}\n"
            )
            self.close_connection = True
            self.send_json(400, {"detail": f"invalid request body: {error}"})
            return

        if path == "/__requests":
            self.send_json(200, self.state.request_log())
            return

        content_type = self.headers.get("Content-Type", "")
        self.state.record(
            {
                "method": self.command,
                "path": path,
                "query": url.query,
                # Name-value pairs in arrival order, so repeated headers stay visible.
                "headers": [
                    [name.lower(), value] for name, value in self.headers.items()
                ],
                "body_length": len(body),
                "content_type": content_type,
                "run_ids": extract_run_ids(path, content_type, body),
            }
        )
        status, payload = self.route(self.command, path, query, body)
        self.send_json(status, payload)

    def route(self, method, path, query, body):
        segments = [segment for segment in path.split("/") if segment]
        if method == "GET" and segments == ["info"]:
            return 200, INFO
        if segments[:1] == ["sessions"]:
            return self.route_sessions(method, segments[1:], query, body)
        if segments[:1] == ["datasets"]:
            return self.route_datasets(method, segments[1:], query)
        if segments[:1] == ["runs"]:
            return self.route_runs(method, segments[1:])
        return 404, {"detail": f"Not Found: {method} {path}"}

    def route_sessions(self, method, rest, query, body):
        if method == "POST" and not rest:
            return self.create_session(query, body)
        if method == "GET" and not rest:
            with self.state.lock:
                sessions = list(self.state.sessions.values())
            names = query.get("name")
            if names:
                sessions = [session for session in sessions if session["name"] in names]
            return paginate(sessions, query)
        if method == "GET" and len(rest) == 1:
            with self.state.lock:
                session = self.state.sessions.get(parse_uuid(rest[0]))
            if session is None:
                return 404, {"detail": "Session not found"}
            return 200, session
        return 404, {"detail": f"Not Found: {method} /sessions/{'/'.join(rest)}"}

    def create_session(self, query, body):
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 422, {"detail": "request body is not valid JSON"}
        name = request.get("name")
        if not name:
            return 422, {"detail": "name is required"}
        tenant_id = parse_uuid(self.headers.get("X-Tenant-Id")) or DEFAULT_TENANT_ID
        session = {
            "id": parse_uuid(request.get("id")) or str(uuid.uuid4()),
            "name": name,
            "description": request.get("description"),
            "extra": request.get("extra"),
            "start_time": utc_now_iso(),
            "end_time": None,
            "tenant_id": tenant_id,
            "reference_dataset_id": request.get("reference_dataset_id"),
            "run_count": 0,
        }
        upsert = query.get("upsert", ["false"])[0].lower() == "true"
        with self.state.lock:
            existing = [s for s in self.state.sessions.values() if s["name"] == name]
            if existing and not upsert:
                return 409, {"detail": f"Session {name!r} already exists"}
            if existing:
                session["id"] = existing[0]["id"]
            self.state.sessions[session["id"]] = session
        return 200, session

    def route_datasets(self, method, rest, query):
        if method == "GET" and not rest:
            datasets = [DATASET]
            names = query.get("name")
            if names:
                datasets = [dataset for dataset in datasets if dataset["name"] in names]
            return paginate(datasets, query)
        if method == "GET" and len(rest) == 1 and parse_uuid(rest[0]) == DATASET["id"]:
            return 200, DATASET
        return 404, {"detail": "Dataset not found"}

    def route_runs(self, method, rest):
        if method == "POST" and rest in ([], ["batch"], ["multipart"]):
            return 202, {"message": "Runs accepted"}
        if method == "PATCH" and len(rest) == 1 and parse_uuid(rest[0]):
            return 202, {"message": "Run update accepted"}
        return 404, {"detail": "Not Found"}

    def log_message(self, format, *args):
        sys.stderr.write(f"fake-langsmith: {self.address_string()} {format % args}\n")


def paginate(items, query):
    """Apply the limit and offset query parameters that the SDK sends to list endpoints.

    Returns the HTTP status and the page, or 422 with a message for a value that is not an integer.
    """
    try:
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", ["100"])[0])
    except ValueError:
        return 422, {"detail": "offset and limit must be integers"}
    return 200, items[offset : offset + limit]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="TCP port to listen on at 127.0.0.1 (default 0, which lets the OS pick a free port)",
    )
    args = parser.parse_args()

    Handler.state = State()
    server = ThreadingHTTPServer((HOST, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"listening {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
