"""A real HTTP server that speaks enough of the OpenAI chat-completions protocol to test backends.

Why a real server (and not a mocked client): retries, timeouts, dropped connections, Retry-After
headers, connection pooling and concurrency only behave like production when bytes cross a socket.

Run it as a process::

    python tests/fake_openai_server.py --port 0 [--script rules.json] [--responder mod:fn]
        [--latency-ms 50] [--log requests.jsonl] [--expected-key-env NAME]

It prints its port on stdout (one line) once it accepts connections. From a test, use
:func:`spawn` (a subprocess, returns a :class:`FakeServerProcess`) or :class:`FakeOpenAIServer`
(a thread in the test process); both expose ``base_url``, ``set_script``, ``reset``,
``requests`` (the parsed request log) and ``stats``.

Scripted faults are rules, first match wins::

    [{"match": "Paris", "times": 2, "fault": {"status": 429, "retry_after": 1}},
     {"match": "*", "fault": {"reject_response_format": "json_schema"}}]

``match`` is a substring of the last user message, or ``"*"``; ``times`` is how many requests the
rule fires for (omitted: forever). Faults: ``{"status": N, "retry_after": S, "retry_after_ms": MS,
"message": str}``, ``{"delay_s": S}`` (answer after S seconds), ``{"truncate": true}`` (content cut
in half), ``{"huge_body": N}`` (a 200 of N bytes; ``"chunked": true`` sends it without a
Content-Length), ``{"reject_response_format": "json_schema"}`` (400 for an unsupported type; add
``"status": 500`` to answer like llama-cpp-python's server does; only fires for requests that use
that type), ``{"drop_connection": true}``, ``{"reject_field": "grammar"}`` (400, or ``"status"``, for a
request whose body has that top-level field, as OpenAI answers an unknown parameter; only fires for
requests that have it). Unknown fields are otherwise ignored, as vLLM and llama.cpp do.

A responder ``fn(request_json) -> str | dict`` makes the answers: a str is the assistant content; a
dict is ``{"content": str}`` optionally with ``prompt_tokens``/``completion_tokens``, or
``{"fault": {...}}``. The default answers a minimal instance of the response_format schema.

It also fakes OpenAI's Batch API (``/v1/files``, ``/v1/batches``; see :class:`FakeBatchAPI`):
``set_batch(polls=N, rules=[...])`` (``POST /admin/batch``) sets how many retrievals a batch takes
and its faults, ``batch_log()`` (``GET /admin/batches``) lists every batch created.
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]


def minimal_instance(schema: dict[str, Any] | None, defs: dict[str, Any] | None = None) -> Any:
    """The smallest value that satisfies a (simple) JSON schema: enough for default answers."""
    if not schema:
        return {"ok": True}
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return minimal_instance(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return minimal_instance(schema[key][0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_instance(props.get(name, {}), defs) for name in schema.get("required", [])}
    return {"array": [], "string": "x", "integer": 0, "number": 0, "boolean": False}.get(kind)


def default_responder(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    schema = schema or fmt.get("schema")
    return json.dumps(minimal_instance(schema))


def echo_sentence(body: dict[str, Any]) -> dict[str, Any]:
    """Example responder: echoes the text between ``<sentence>`` and ``</sentence>`` as JSON, or asks
    for a 500 when the sentence is ``FAIL``. A model for domain responders in other tests."""
    text = last_user_message(body)
    start, end = text.find("<sentence>"), text.find("</sentence>")
    sentence = text[start + len("<sentence>"):end] if 0 <= start < end else ""
    if sentence == "FAIL":
        return {"fault": {"status": 500}}
    return {"content": json.dumps({"sentence": sentence}), "completion_tokens": len(sentence.split()) + 3}


def load_responder(spec: str) -> Responder:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def last_user_message(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


class State:
    """Everything the handler threads share, behind one lock."""

    def __init__(self, rules: list[dict[str, Any]] | None, responder: Responder | None, latency_ms: float,
                 log_path: Path | None, expected_key: str | None, model: str) -> None:
        self.lock = threading.Lock()
        self.responder = responder or default_responder
        self.latency_ms = latency_ms
        self.log_path = log_path
        self.expected_key = expected_key
        self.model = model
        self.set_script(rules or [])
        self.batch_api = FakeBatchAPI()
        self.reset()

    def set_script(self, rules: list[dict[str, Any]], latency_ms: float | None = None) -> None:
        with self.lock:
            self.rules = [dict(rule) for rule in rules]
            if latency_ms is not None:
                self.latency_ms = latency_ms

    def reset(self) -> None:
        with self.lock:
            self.generation = getattr(self, "generation", 0) + 1  # requests begun before do not count
            self.log: list[dict[str, Any]] = []
            self.in_flight = 0
            self.max_in_flight = 0
            self.by_status: Counter[str] = Counter()
            if self.log_path is not None:
                self.log_path.write_text("")

    def match(self, body: dict[str, Any]) -> tuple[int | None, dict[str, Any] | None]:
        text = last_user_message(body)
        fmt_type = (body.get("response_format") or {}).get("type")
        with self.lock:
            for index, rule in enumerate(self.rules):
                fault = rule.get("fault", {})
                if rule.get("times") is not None and rule["times"] <= 0:
                    continue
                if rule.get("match", "*") != "*" and rule["match"] not in text:
                    continue
                if "reject_response_format" in fault and fault["reject_response_format"] != fmt_type:
                    continue
                if "reject_field" in fault and fault["reject_field"] not in body:
                    continue
                if rule.get("times") is not None:
                    rule["times"] -= 1
                return index, fault
        return None, None

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            if entry.pop("generation", self.generation) != self.generation:
                return  # a slow request from before the last reset (e.g. a timed-out one)
            self.log.append(entry)
            self.by_status[str(entry.get("status"))] += 1
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": len(self.log), "by_status": dict(self.by_status),
                    "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


# -- the Batch API ---------------------------------------------------------------------------------

BATCH_TERMINAL = ("completed", "failed", "expired", "cancelled")


def _page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    """A cursor page as OpenAI's list endpoints answer (``after`` an id, ``limit`` items)."""
    after = query["after"][0] if query.get("after") else None
    limit = max(1, min(100, int((query.get("limit") or ["20"])[0])))
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    data = items[start:start + limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": start + limit < len(items)}


class FakeBatchAPI:
    """Files and batches of the fake Batch API.

    A batch answers its lines with the same rules and responder as ``/v1/chat/completions``
    (a scripted ``status`` fault sends a line to the error file, ``truncate`` cuts its content)
    and ends after ``polls`` retrievals: validating -> in_progress -> completed. Batch faults
    (``set_batch(rules=...)``, first rule with ``times`` left applies to each new batch)::

        {"fault": "expire", "answered": K}   expired, only the first K lines answered (the
                                             rest in the error file as batch_expired, or in
                                             no file with "silent": true)
        {"fault": "cancel", "answered": K}   cancelled, likewise (batch_cancelled)
        {"fault": "fail", "message": M}      failed as a whole at validation (no output)
        {"fault": "drop_lines", "match": S}  completed, lines whose last user message has S absent
        {"fault": "error_lines", "match": S} those lines in the error file with an ``error`` object

    ``log`` records each created batch: its input file, metadata, custom_ids and, once it ran,
    the custom_ids it answered with a 200. Guarded by its own ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # its own: answering lines takes the State's lock (rules)
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.internal: dict[str, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []
        self.polls = 2
        self.rules: list[dict[str, Any]] = []
        self.ids = 0

    def new_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids:06d}"

    def add_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        file_id = self.new_id("file-")
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content),
                               "created_at": int(time.time()), "filename": filename, "purpose": purpose,
                               "status": "processed"}
        self.contents[file_id] = content
        return self.files[file_id]

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file_id = body.get("input_file_id")
        if file_id not in self.contents:
            return 404, {"error": {"message": f"No such File object: {file_id}",
                                   "type": "invalid_request_error"}}
        batch_id = self.new_id("batch_")
        lines, errors = [], []
        seen: set[str] = set()
        for number, raw in enumerate(self.contents[file_id].splitlines(), 1):
            try:
                line = json.loads(raw)
                custom_id = line["custom_id"]
                assert isinstance(custom_id, str) and isinstance(line["body"], dict)
            except (ValueError, KeyError, TypeError, AssertionError):
                errors.append({"code": "invalid_json_line", "message": "This line is not valid JSONL.",
                               "param": None, "line": number})
                continue
            if custom_id in seen:
                errors.append({"code": "duplicate_custom_id", "message": "The custom_id is a duplicate.",
                               "param": None, "line": number})
            seen.add(custom_id)
            lines.append((custom_id, line["body"]))
        fault: dict[str, Any] = {}
        for rule in self.rules:
            if rule.get("times") is not None and rule["times"] <= 0:
                continue
            if rule.get("times") is not None:
                rule["times"] -= 1
            fault = dict(rule)
            break
        if fault.get("fault") == "fail":
            errors.append({"code": "invalid_request", "param": None, "line": 1,
                           "message": fault.get("message", "scripted batch failure")})
        now = int(time.time())
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": file_id, "completion_window": body.get("completion_window"),
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata")}
        self.internal[batch_id] = {"lines": lines, "errors": errors, "fault": fault, "polls": 0}
        self.log.append({"batch_id": batch_id, "input_file_id": file_id, "metadata": body.get("metadata"),
                         "custom_ids": [c for c, _ in lines], "answered": [], "status": "validating"})
        return 200, self.batches[batch_id]

    def advance(self, batch_id: str, state: State) -> None:
        """One retrieval's worth of progress (called with this API's lock held)."""
        batch, inner = self.batches[batch_id], self.internal[batch_id]
        inner["polls"] += 1
        now = int(time.time())
        if batch["status"] == "validating":
            if inner["errors"]:
                batch.update(status="failed", failed_at=now,
                             errors={"object": "list", "data": inner["errors"]})
            else:
                batch.update(status="in_progress", in_progress_at=now)
        elif batch["status"] == "in_progress" and inner["polls"] >= self.polls:
            kind = inner["fault"].get("fault")
            self.run(batch_id, state, {"expire": "expired", "cancel": "cancelled"}.get(kind, "completed"))
        elif batch["status"] == "cancelling":
            self.run(batch_id, state, "cancelled")
        self.log_entry(batch_id)["status"] = batch["status"]

    def log_entry(self, batch_id: str) -> dict[str, Any]:
        return next(entry for entry in self.log if entry["batch_id"] == batch_id)

    def run(self, batch_id: str, state: State, status: str) -> None:
        """Answer the lines and end the batch with ``status``."""
        batch, inner = self.batches[batch_id], self.internal[batch_id]
        fault = inner["fault"]
        cut = int(fault.get("answered", 0)) if status in ("expired", "cancelled") else len(inner["lines"])
        outputs: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        answered: list[str] = []
        for index, (custom_id, body) in enumerate(inner["lines"]):
            line_id = f"batch_req_{batch_id}_{index}"
            text = last_user_message(body)
            if index >= cut:
                if fault.get("silent"):
                    continue  # lines that never ran, in no file at all
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                failures.append({"id": line_id, "custom_id": custom_id, "response": None,
                                 "error": {"code": code, "message": f"The batch {status} before it ran."}})
                continue
            if fault.get("fault") == "drop_lines" and fault.get("match", "") in text:
                continue
            if fault.get("fault") == "error_lines" and fault.get("match", "") in text:
                failures.append({"id": line_id, "custom_id": custom_id, "response": None,
                                 "error": {"code": "server_error", "message": "scripted line error"}})
                continue
            status_code, payload = _answer_offline(state, body)
            response = {"status_code": status_code, "request_id": f"req_{line_id}", "body": payload}
            entry = {"id": line_id, "custom_id": custom_id, "error": None, "response": response}
            (outputs if status_code == 200 else failures).append(entry)
            if status_code == 200:
                answered.append(custom_id)
        if outputs:
            content = "".join(json.dumps(o) + "\n" for o in outputs).encode()
            batch["output_file_id"] = self.add_file(f"{batch_id}_output.jsonl", "batch_output", content)["id"]
        if failures:
            content = "".join(json.dumps(o) + "\n" for o in failures).encode()
            batch["error_file_id"] = self.add_file(f"{batch_id}_error.jsonl", "batch_output", content)["id"]
        now = int(time.time())
        batch.update(status=status, finalizing_at=now, **{f"{status}_at": now})
        batch["request_counts"] = {"total": len(inner["lines"]), "completed": len(outputs),
                                   "failed": len([f for f in failures if f["error"] is None])}
        self.log_entry(batch_id)["answered"] = answered


def _answer_offline(state: State, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A chat completion for one batch line: the scripted rules (``status``, ``truncate``) and the
    responder, as ``/v1/chat/completions`` would answer it."""
    _, fault = state.match(body)
    fault = fault or {}
    try:
        answer = state.responder(body)
    except Exception as exc:  # a broken responder is a test bug: say so in the answer
        return 500, {"error": {"message": f"responder raised {exc!r}", "type": "responder_error"}}
    if isinstance(answer, dict) and "fault" in answer:
        fault = {**fault, **answer["fault"]}
    if "status" in fault:
        status = int(fault["status"])
        return status, {"error": {"message": fault.get("message", f"scripted error {status}"),
                                  "type": "scripted", "code": status}}
    usage: dict[str, int] = {}
    if isinstance(answer, dict):
        content = str(answer.get("content", ""))
        usage = {k: int(answer[k]) for k in ("prompt_tokens", "completion_tokens") if k in answer}
    else:
        content = str(answer)
    if fault.get("truncate"):
        content = content[: len(content) // 2]
    prompt_text = " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
    prompt_tokens = usage.get("prompt_tokens", _tokens(prompt_text))
    completion_tokens = usage.get("completion_tokens", _tokens(content))
    return 200, {"id": f"chatcmpl-{int(time.time() * 1e6)}", "object": "chat.completion",
                 "created": int(time.time()), "model": body.get("model") or state.model,
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": content}}],
                 "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                           "total_tokens": prompt_tokens + completion_tokens}}


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``name -> (filename, bytes)`` of a multipart/form-data body (the SDK's file upload)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers: the client's pool is exercised
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSONL request log is the record; stderr noise would only slow the server down

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout): nothing to answer to
            self.close_connection = True

    def _send_huge(self, size: int, *, chunked: bool) -> None:
        """A 200 whose body is ``size`` bytes of valid chat-completions JSON, sent in 64 KiB writes,
        with a Content-Length or (``chunked``) without one, as a streaming proxy would."""
        head = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"'
        tail = b'"}}]}'
        filler = max(0, size - len(head) - len(tail))
        piece = b"x" * 65536
        self.close_connection = True  # the client may stop reading half-way
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(head) + filler + len(tail)))
            self.end_headers()
            parts = [head, *([piece] * (filler // len(piece))), b"x" * (filler % len(piece)), tail]
            for part in parts:
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:
        if self._batch_route("GET"):
            return
        state = self.server.state
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": state.model, "object": "model"}]})
        elif self.path.rstrip("/") == "/stats":
            self._send_json(200, state.stats())
        elif self.path.rstrip("/") == "/admin/log":
            with state.lock:
                self._send_json(200, list(state.log))
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        if self._batch_route("POST"):
            return
        state = self.server.state
        path, _, query = self.path.partition("?")  # Azure-style endpoints carry ?api-version=...
        path = path.rstrip("/")
        body = self._read_json()
        if path == "/admin/script":
            state.set_script(body.get("rules", []), body.get("latency_ms"))
            self._send_json(200, {"ok": True})
        elif path == "/admin/reset":
            state.reset()
            self._send_json(200, {"ok": True})
        elif path == "/v1/chat/completions":
            state.enter()
            try:
                self._chat(state, body, query)
            finally:
                state.leave()
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    # -- the Batch API (FakeBatchAPI) -----------------------------------------------------------

    def _read_raw(self) -> bytes:
        """The request body, sent with a Content-Length or chunked."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _batch_route(self, method: str) -> bool:
        """Answer a Batch API or batch admin route; False for any other path."""
        state = self.server.state
        api = state.batch_api
        path, _, query_text = self.path.partition("?")
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["admin"] and parts[1:] in (["batch"], ["batches"]):
            if method == "POST":
                body = self._read_json()
                if body.get("reset"):
                    state.batch_api = api = FakeBatchAPI()
                with api.lock:
                    if body.get("polls") is not None:
                        api.polls = int(body["polls"])
                    if body.get("rules") is not None:
                        api.rules = [dict(rule) for rule in body["rules"]]
                self._send_json(200, {"ok": True})
            else:
                with api.lock:
                    entries = [dict(entry) for entry in api.log]
                self._send_json(200, entries)
            return True
        if parts[:1] != ["v1"] or parts[1:2] not in (["files"], ["batches"]):
            return False
        raw = self._read_raw() if method == "POST" else b""
        expected = state.expected_key
        if expected is not None and self.headers.get("Authorization") != f"Bearer {expected}":
            self._send_json(401, {"error": {"message": "Incorrect API key provided.",
                                            "type": "invalid_request_error", "code": "invalid_api_key"}})
            return True
        query = urllib.parse.parse_qs(query_text)
        with api.lock:
            status, payload = self._batch_call(api, method, parts[1:], query, raw)
        if isinstance(payload, bytes):
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                self.close_connection = True
        else:
            self._send_json(status, payload)
        return True

    def _batch_call(self, api: FakeBatchAPI, method: str, route: list[str], query: dict[str, list[str]],
                    raw: bytes) -> tuple[int, Any]:
        missing = (404, {"error": {"message": f"no such object: {'/'.join(route)}",
                                   "type": "invalid_request_error"}})
        if route == ["files"] and method == "POST":
            fields = _parse_multipart(self.headers.get("Content-Type") or "", raw)
            filename, content = fields.get("file", (None, b""))
            purpose = fields.get("purpose", (None, b""))[1].decode()
            if purpose != "batch":
                return 400, {"error": {"message": f"invalid purpose {purpose!r}",
                                       "type": "invalid_request_error"}}
            return 200, api.add_file(filename or "upload.jsonl", purpose, content)
        if route == ["files"]:
            wanted = query["purpose"][0] if query.get("purpose") else None
            files = [f for f in reversed(api.files.values()) if wanted is None or f["purpose"] == wanted]
            return 200, _page(files, query)
        if route[0] == "files" and len(route) in (2, 3) and route[1] in api.files:
            if len(route) == 3 and route[2] == "content":
                return 200, api.contents[route[1]]
            return (200, api.files[route[1]]) if len(route) == 2 else missing
        if route == ["batches"] and method == "POST":
            return api.create(json.loads(raw or b"{}"))
        if route == ["batches"]:
            return 200, _page([api.batches[i] for i in reversed(list(api.batches))], query)
        if route[0] == "batches" and len(route) >= 2 and route[1] in api.batches:
            batch = api.batches[route[1]]
            if len(route) == 3 and route[2] == "cancel" and method == "POST":
                if batch["status"] not in BATCH_TERMINAL:
                    batch.update(status="cancelling", cancelling_at=int(time.time()))
                return 200, dict(batch)
            if len(route) == 2 and method == "GET":
                if batch["status"] not in BATCH_TERMINAL:
                    api.advance(route[1], self.server.state)
                return 200, dict(batch)
        return missing

    def _chat(self, state: State, body: dict[str, Any], query: str = "") -> None:
        auth = self.headers.get("Authorization")
        fmt_type = (body.get("response_format") or {}).get("type")
        entry: dict[str, Any] = {
            "generation": state.generation, "ts": time.time(), "rule": None, "fault": None, "query": query,
            "response_format": fmt_type,
            "has_schema": bool((body.get("response_format") or {}).get("schema")
                               or (body.get("response_format") or {}).get("json_schema")),
            "auth": auth is not None, "auth_ok": None, "model": body.get("model"),
            "constraint_fields": sorted(k for k in ("grammar", "structured_outputs", "guided_grammar",
                                                    "guided_regex") if k in body),
            "strict": bool(((body.get("response_format") or {}).get("json_schema") or {}).get("strict")),
            "last_user": last_user_message(body)[:200], "last_user_tail": last_user_message(body)[-200:],
        }
        if state.latency_ms:
            time.sleep(state.latency_ms / 1000)
        if state.expected_key is not None:
            entry["auth_ok"] = auth == f"Bearer {state.expected_key}"
            if not entry["auth_ok"]:
                entry["status"] = 401
                state.record(entry)
                self._send_json(401, {"error": {"message": "Incorrect API key provided.",
                                                "type": "invalid_request_error", "code": "invalid_api_key"}})
                return
        rule, fault = state.match(body)
        entry["rule"] = rule
        if fault and not self._apply_fault(fault, entry, state):
            return
        try:
            answer = state.responder(body)
        except Exception as exc:  # a broken responder is a test bug: say so in the answer, loudly
            entry["status"] = 500
            state.record(entry)
            self._send_json(500, {"error": {"message": f"responder raised {exc!r}",
                                            "type": "responder_error"}})
            return
        usage: dict[str, int] = {}
        if isinstance(answer, dict) and "fault" in answer:
            fault = answer["fault"]
            if not self._apply_fault(fault, entry, state):
                return
            answer = {k: v for k, v in answer.items() if k != "fault"}
        if isinstance(answer, dict):
            content = str(answer.get("content", ""))
            usage = {k: int(answer[k]) for k in ("prompt_tokens", "completion_tokens") if k in answer}
        else:
            content = str(answer)
        if fault and fault.get("truncate"):
            content = content[: len(content) // 2]
        prompt_text = " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
        prompt_tokens = usage.get("prompt_tokens", _tokens(prompt_text))
        completion_tokens = usage.get("completion_tokens", _tokens(content))
        entry["status"] = 200
        state.record(entry)
        self._send_json(200, {
            "id": f"chatcmpl-{int(time.time() * 1e6)}", "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or state.model,
            "choices": [{"index": 0, "finish_reason": "length" if fault and fault.get("truncate") else "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    def _apply_fault(self, fault: dict[str, Any], entry: dict[str, Any], state: State) -> bool:
        """Act out a fault. True: go on and answer normally (delay, truncate)."""
        entry["fault"] = ",".join(sorted(fault))
        if fault.get("delay_s"):
            time.sleep(float(fault["delay_s"]))
        if fault.get("drop_connection"):
            entry["status"] = "dropped"
            state.record(entry)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return False
        if fault.get("huge_body"):
            entry["status"] = 200
            state.record(entry)
            self._send_huge(int(fault["huge_body"]), chunked=bool(fault.get("chunked")))
            return False
        if "reject_response_format" in fault:
            status = int(fault.get("status", 400))  # llama-cpp-python's server says 500
            entry["status"] = status
            state.record(entry)
            kind = fault["reject_response_format"]
            self._send_json(status, {"error": {
                "message": f"1 validation error: body.response_format.type: Input should be 'text' or "
                           f"'json_object', got '{kind}'", "type": "invalid_request_error",
                "param": "response_format", "code": None}})
            return False
        if "reject_field" in fault:
            status = int(fault.get("status", 400))
            entry["status"] = status
            state.record(entry)
            name = fault["reject_field"]
            self._send_json(status, {"error": {
                "message": f"Unrecognized request argument supplied: {name}",
                "type": "invalid_request_error", "param": name, "code": None}})
            return False
        if "status" in fault:
            status = int(fault["status"])
            headers = {}
            if "retry_after" in fault:
                headers["Retry-After"] = str(fault["retry_after"])
            if "retry_after_ms" in fault:
                headers["retry-after-ms"] = str(fault["retry_after_ms"])
            entry["status"] = status
            state.record(entry)
            message = fault.get("message", f"scripted error {status}")
            error = {"error": {"message": message, "type": "scripted", "code": status}}
            self._send_json(status, error, headers)
            return False
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # slow (delayed) handlers must never block shutdown
    request_queue_size = 512  # listen backlog: bursts of 64+ new connections are not refused
    state: State

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (its timeout, its pool closing) is routine here, not an error."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """The server on a thread of the current process (fast to start; for fixtures)."""

    def __init__(self, rules: list[dict[str, Any]] | None = None, *, responder: Responder | None = None,
                 latency_ms: float = 0, log_path: str | Path | None = None, expected_key: str | None = None,
                 model: str = "fake-model", host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _Server((host, port), Handler)
        self._httpd.state = State(rules, responder, latency_ms, Path(log_path) if log_path else None,
                                  expected_key, model)
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_script(self, rules: list[dict[str, Any]], latency_ms: float | None = None) -> None:
        self._httpd.state.set_script(rules, latency_ms)

    def reset(self) -> None:
        self._httpd.state.reset()

    def requests(self) -> list[dict[str, Any]]:
        with self._httpd.state.lock:
            return list(self._httpd.state.log)

    def stats(self) -> dict[str, Any]:
        return self._httpd.state.stats()

    def set_batch(self, *, polls: int | None = None, rules: list[dict[str, Any]] | None = None,
                  reset: bool = False) -> None:
        """Configure the fake Batch API: retrievals until a batch ends, batch fault rules."""
        state = self._httpd.state
        if reset:
            state.batch_api = FakeBatchAPI()
        with state.batch_api.lock:
            if polls is not None:
                state.batch_api.polls = polls
            if rules is not None:
                state.batch_api.rules = [dict(rule) for rule in rules]

    def batch_log(self) -> list[dict[str, Any]]:
        """Every batch created: input file, metadata, custom_ids, answered custom_ids, status."""
        api = self._httpd.state.batch_api
        with api.lock:
            return [dict(entry) for entry in api.log]


class FakeServerProcess:
    """Handle on a server subprocess started by :func:`spawn`; administered over HTTP."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def _call(self, path: str, payload: Any | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def set_script(self, rules: list[dict[str, Any]], latency_ms: float | None = None) -> None:
        self._call("/admin/script", {"rules": rules, "latency_ms": latency_ms})

    def reset(self) -> None:
        self._call("/admin/reset", {})

    def requests(self) -> list[dict[str, Any]]:
        return self._call("/admin/log")

    def stats(self) -> dict[str, Any]:
        return self._call("/stats")

    def set_batch(self, *, polls: int | None = None, rules: list[dict[str, Any]] | None = None,
                  reset: bool = False) -> None:
        self._call("/admin/batch", {"polls": polls, "rules": rules, "reset": reset})

    def batch_log(self) -> list[dict[str, Any]]:
        return self._call("/admin/batches")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> FakeServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(*args: str, env: dict[str, str] | None = None, timeout_s: float = 15) -> FakeServerProcess:
    """Start ``python tests/fake_openai_server.py --port 0 ARGS...`` and wait for its port."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = ""
    while time.monotonic() < deadline and not line:
        line = proc.stdout.readline().strip()
        if proc.poll() is not None:
            break
    if not line.isdigit():
        proc.kill()
        raise RuntimeError(f"fake server did not start (got {line!r}, exit {proc.poll()})")
    return FakeServerProcess(proc, int(line))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", help="JSON file with a list of fault rules")
    parser.add_argument("--responder", help="module:function making the answers")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--log", help="JSONL request log (one line per request)")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--expected-key-env", help="answer 401 unless the Bearer token equals this env var")
    args = parser.parse_args(argv)
    rules = json.loads(Path(args.script).read_text()) if args.script else []
    responder = load_responder(args.responder) if args.responder else None
    expected = os.environ[args.expected_key_env] if args.expected_key_env else None
    server = FakeOpenAIServer(rules, responder=responder, latency_ms=args.latency_ms, log_path=args.log,
                              expected_key=expected, model=args.model, host=args.host, port=args.port)
    print(server.port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._httpd.serve_forever()


if __name__ == "__main__":
    main()
