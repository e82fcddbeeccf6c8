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
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
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
