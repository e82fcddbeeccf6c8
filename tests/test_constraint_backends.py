"""Span-constraint negotiation (issue 11, item 1) against the fake server, over both transports, and
``openie4pp annotate --constrain spans`` end to end."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_server import FakeOpenAIServer, FakeServerProcess, spawn

from openie4pp.annotate.backends import OpenAICompatBackend
from openie4pp.annotate.constraints import build_constraint
from openie4pp.annotate.contract import ExtractionAnswer
from openie4pp.annotate.llm import ChatRequest, ChatResponse, Message, RequestFailed
from openie4pp.app.cli import main
from openie4pp.errors import UsageError
from openie4pp.schema import Sentence

SCHEMA = ExtractionAnswer.model_json_schema()
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5}
SENTENCE = Sentence.from_text("Paris is the capital of France.", "en")
LONG = Sentence.from_text(" ".join(f"word{i}" for i in range(120)) + ".", "en")  # no enum fits


def request(text: str, sentence: Sentence | None = SENTENCE) -> ChatRequest:
    base = ChatRequest(messages=(Message("system", "You extract triples."),
                                 Message("user", f"<sentence>{text}</sentence>")),
                       schema_name="extraction", schema=SCHEMA, prompt_id="t", prompt_hash="h")
    return base if sentence is None else replace(base, constraint=build_constraint(sentence))


@pytest.fixture
def server(plain: FakeServerProcess) -> FakeServerProcess:
    """The default-responder server of ``conftest.py`` under this module's name for it."""
    return plain


def complete_all(server_url: str, http_client: str, *requests: ChatRequest,
                 **kwargs: Any) -> tuple[list[ChatResponse], OpenAICompatBackend]:
    backend = OpenAICompatBackend([server_url], "fake-model", http_client=http_client,  # type: ignore[arg-type]
                                  **{**FAST, **kwargs})

    async def go() -> list[ChatResponse]:
        try:
            return [await backend.complete(r) for r in requests]
        finally:
            await backend.aclose()

    return asyncio.run(go()), backend


def log(server: FakeServerProcess) -> list[tuple[str, list[str], str | None, int]]:
    return [(r["last_user"].split("<sentence>")[-1].split("</sentence>")[0], r["constraint_fields"],
             r["response_format"], r["status"]) for r in server.requests()]


def test_accepted_grammar_is_sent_without_response_format(http_client: str,
                                                           server: FakeServerProcess) -> None:
    (resp,), _ = complete_all(server.base_url, http_client, request("one"))
    assert resp.constraint == "grammar" and resp.structured == "none"
    assert log(server) == [("one", ["grammar"], None, 200)]
    # the grammar fixes the shape: the schema's ~400 tokens are not added to the prompt
    assert '"triples"' not in server.requests()[0]["last_user_tail"]


def test_request_without_constraint_is_unchanged(http_client: str, server: FakeServerProcess) -> None:
    (resp,), _ = complete_all(server.base_url, http_client, request("plain", None))
    assert resp.constraint == "none" and resp.structured == "json_schema"
    assert log(server) == [("plain", [], "json_schema", 200)]
    assert not server.requests()[0]["strict"]


def test_rejected_grammar_steps_down_and_is_remembered(http_client: str, server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "fault": {"reject_field": "grammar"}}])
    (first, second), _ = complete_all(server.base_url, http_client, request("one"), request("two"))
    assert first.constraint == second.constraint == "structured_outputs" and first.retries == 0
    # remembered: "two" goes straight to the kind that works
    assert log(server) == [("one", ["grammar"], None, 400), ("one", ["structured_outputs"], None, 200),
                           ("two", ["structured_outputs"], None, 200)]


@pytest.mark.parametrize("status", [400, 422])
def test_every_grammar_field_rejected_falls_to_the_enum_schema(http_client: str, server: FakeServerProcess,
                                                               status: int) -> None:
    server.set_script([{"match": "*", "fault": {"reject_field": field, "status": status}}
                       for field in ("grammar", "structured_outputs", "guided_grammar")])
    (resp,), _ = complete_all(server.base_url, http_client, request("one"))
    assert resp.constraint == "json_schema_enum" and resp.structured == "json_schema"
    assert [entry[1:] for entry in log(server)] == [
        (["grammar"], None, status), (["structured_outputs"], None, status),
        (["guided_grammar"], None, status), ([], "json_schema", 200)]
    assert server.requests()[-1]["strict"]
    assert json.loads(resp.content) == {"triples": []}


def test_no_enum_for_a_long_sentence_and_a_rejected_enum_fall_to_none(http_client: str,
                                                                      server: FakeServerProcess) -> None:
    rules = [{"match": "*", "fault": {"reject_field": field}}
             for field in ("grammar", "structured_outputs", "guided_grammar")]
    server.set_script([*rules, {"match": "*", "fault": {"reject_response_format": "json_schema"}}])
    (short, long, again), _ = complete_all(server.base_url, http_client, request("short"),
                                           request("long", LONG), request("again"))
    # the enum kind was rejected (with json_schema itself): none, then the usual json_object
    assert short.constraint == "none" and short.structured == "json_object"
    assert long.constraint == again.constraint == "none"
    assert log(server)[-1] == ("again", [], "json_object", 200)  # remembered: nothing is tried again


def test_llama_cpp_style_500_quoting_the_field_steps_down(http_client: str,
                                                          server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "fault": {"reject_field": "grammar", "status": 500}}])
    (resp,), _ = complete_all(server.base_url, http_client, request("one"), bench_after=1)
    assert resp.constraint == "structured_outputs"


def test_pinned_constraint_kind_does_not_negotiate(server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "fault": {"reject_field": "grammar"}}])
    with pytest.raises(RequestFailed, match="grammar"):
        complete_all(server.base_url, "aiohttp", request("one"), constrain_via="grammar")
    with pytest.raises(UsageError, match="constrain_via"):
        OpenAICompatBackend([server.base_url], "m", constrain_via="regex")  # type: ignore[arg-type]


def test_an_endpoint_that_ignores_the_grammar_steps_down(http_client: str) -> None:
    """vLLM and llama.cpp ignore unknown fields: an answer with a non-span string shows it."""
    def respond(body: dict[str, Any]) -> str:
        return json.dumps({"triples": [{"subject": "Paris", "relation": "is capital of",
                                        "object": "France", "extra": []}]})

    with FakeOpenAIServer(responder=respond) as fake:
        (first, second, third), _ = complete_all(fake.base_url, http_client, request("one"), request("two"),
                                                 request("three"))
        assert first.constraint == "none"  # it was sent, but not obeyed
        assert second.constraint == "none"  # structured_outputs ignored as well
        assert third.constraint == "none"  # and guided_grammar, the next kind down
        assert [r["constraint_fields"] for r in fake.requests()] == [["grammar"], ["structured_outputs"],
                                                                     ["guided_grammar"]]


def test_the_constraint_is_part_of_the_cache_key() -> None:
    plain, constrained = request("x", None), request("x")
    assert plain.cache_key("m") != constrained.cache_key("m")
    assert constrained.cache_key("m") == request("x").cache_key("m")
    other = replace(plain, constraint=build_constraint(LONG))
    assert other.cache_key("m") != constrained.cache_key("m")
    assert constrained.with_messages(Message("user", "again")).constraint is constrained.constraint


# -- the CLI end to end -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeServerProcess]:
    server = spawn("--responder", "annotate_responder:respond")
    yield server
    server.stop()


def _annotate(server: FakeServerProcess, source: Path, out: Path, *extra: str) -> dict[str, Any]:
    code = main(["annotate", "--input", str(source), "--out", str(out), "--endpoint", server.base_url,
                 "--model", "fake-model", "--no-progress", "--canaries", "0", *extra])
    assert code == 0
    return dict(json.loads((out / "stats.json").read_text(encoding="utf-8")))


def test_cli_constrain_spans_extract_and_project(llm_server: FakeServerProcess, tmp_path: Path) -> None:
    rows = [{"id": "a", "lang": "en", "text": "Tom sells old books."},
            {"id": "b", "lang": "de", "text": "Die Katze schläft auf dem Sofa."},
            {"id": "c", "lang": "zh", "text": "鲁迅出生在浙江绍兴。"}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    llm_server.reset()
    stats = _annotate(llm_server, source, tmp_path / "on", "--constrain", "spans")
    assert stats["records"]["accepted"] == 3 and "ungrounded" not in stats["rejections_per_reason"]
    # stage 1 and the judge (whose fixes must be spans too); every request of the run
    assert stats["span_constraint"] == {"grammar": stats["requests"]} and stats["requests"] == 6
    sent = [r["constraint_fields"] for r in llm_server.requests()]
    assert sent.count(["grammar"]) == 6
    records = [json.loads(line) for path in sorted((tmp_path / "on").glob("*/shard-*.jsonl"))
               for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 3 and {r["provenance"]["constraint"] for r in records} == {"grammar"}
    manifest = json.loads((tmp_path / "on" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["build_config"]["pipeline"]["constrain"] == "spans"

    llm_server.reset()
    stats = _annotate(llm_server, source, tmp_path / "off")
    assert "span_constraint" not in stats  # the default run's stats.json and manifest are as before
    assert all(r["constraint_fields"] == [] for r in llm_server.requests())
    manifest = json.loads((tmp_path / "off" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["build_config"]["pipeline"]["constrain"] == "none"  # auto, for an endpoint URL

    project = tmp_path / "project.jsonl"
    project.write_text(json.dumps({"id": "p", "lang": "en", "text": "The cat sleeps on the sofa.",
                                   "triples": [["The cat", "sleeps", "on the sofa"]]}) + "\n",
                       encoding="utf-8")
    llm_server.reset()
    stats = _annotate(llm_server, project, tmp_path / "proj", "--mode", "project", "--target-lang", "de",
                      "--constrain", "spans")
    assert stats["records"]["accepted"] == 1
    purposes = [(r["last_user"][:40], r["constraint_fields"]) for r in llm_server.requests()]
    assert sum(1 for _, fields in purposes if fields == ["grammar"]) == 2  # projection and judge
    assert stats["span_constraint"]["grammar"] == 2  # the translation is free text
