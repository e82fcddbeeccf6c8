"""The typed annotation config: every mistake is a one-line UsageError naming its dotted path (and
the command-line option), found before the first request; the manifest's copy holds no secret; the
command line's defaults are the config's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from openie4pp.annotate.config import AnnotationConfig, load_config
from openie4pp.annotate.inputs import InputLimits
from openie4pp.annotate.stats import TRANSIENT_REASONS
from openie4pp.app.annotate_command import TRANSIENT_HELP, add_arguments, config_from_args
from openie4pp.errors import UsageError

BASE: dict[str, Any] = {"input": {"path": "in.jsonl"}, "out": "out",
                        "backend": {"endpoints": ["http://127.0.0.1:9/v1"], "model": "m"}}


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--input", "in.jsonl", "--out", "out", "--endpoint", "http://127.0.0.1:9/v1",
                              "--model", "m", *argv])


def with_setting(path: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    *parents, key = path.split(".")
    part = data
    for name in parents:
        part = part.setdefault(name, {})
    part[key] = value
    return data


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(UsageError) as info:
        load_config(data)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("path", ["pipeline.bogus", "backend.breaker.after", "input.max_chars", "outt"])
def test_an_unknown_key_is_refused_with_its_dotted_path(path: str) -> None:
    assert refused(with_setting(path, 1)) == f"{path}: unknown setting"


@pytest.mark.parametrize(("path", "value"), [
    ("pipeline.concurrency", "many"), ("backend.timeout_s", "soon"), ("pipeline.mode", "translate"),
    ("input.format", "csv"), ("pipeline.verify", "perhaps"),
])
def test_a_wrong_type_names_its_dotted_path(path: str, value: Any) -> None:
    assert refused(with_setting(path, value)).startswith(f"{path}: ")


@pytest.mark.parametrize(("path", "value", "option"), [
    ("pipeline.concurrency", 0, "--concurrency 0: must be at least 1"),
    ("pipeline.max_tokens", -1, "--max-tokens -1: must be at least 1"),
    ("backend.timeout_s", 0, "--timeout 0"),
    ("backend.breaker.after_requests", 0, "--breaker-after-requests 0"),
    ("backend.max_rpm", float("inf"), "--max-rpm inf"),
    ("pipeline.price_out", float("nan"), "--price-out nan"),
    ("input.limit", -1, "--limit -1: must be 0 or more"),
    ("input.shard", "3/3", "need 0 <= I < N"),
    ("input.lang", "klingon!", "--lang"),
    ("pipeline.canaries.per_lang", -1, "--canaries -1: must be 0 or more"),
    ("pipeline.canaries.per_lang", 1.5, "--canaries"),
    ("pipeline.canaries.langs", ["ar"], "no gold canaries for ar"),
    ("pipeline.retry_failed", ["bogus"], "unknown reason(s) bogus"),
    ("backend.api_key_env", "sk-live-0123456789abcdef", "--api-key-env"),
])
def test_a_value_out_of_range_names_the_option_and_the_path(path: str, value: Any, option: str) -> None:
    message = refused(with_setting(path, value))
    assert option in message and message.endswith(f"({path})")
    assert "0123456789abcdef" not in message  # a key given as the variable's name is never echoed


def test_checks_across_settings_name_the_setting_at_fault() -> None:
    assert refused(with_setting("backend.endpoints", [])).endswith("(backend.endpoints)")
    assert "--model is required" in refused(with_setting("backend.model", None))
    assert refused(with_setting("backend.endpoints", ["local", "http://h/v1"])).startswith("--endpoint local")
    project = with_setting("pipeline.mode", "project")
    project["pipeline"]["target_langs"] = []
    assert refused(project).endswith("(pipeline.target_langs)")
    project["pipeline"].update(target_langs=["DE", "de"], canaries={"per_lang": 1, "langs": ["en"]})
    assert refused(project).endswith("(pipeline.canaries.langs)")
    # but only when canaries will be planted: none asked, or ``auto`` on the embedded server (0)
    project["pipeline"]["canaries"] = {"per_lang": 0, "langs": ["en"]}
    assert load_config(project).pipeline.canaries.langs == ["en"]
    project["pipeline"]["canaries"] = {"per_lang": "auto", "langs": ["en"]}
    project["backend"] = {"endpoints": ["local"]}
    assert load_config(project).canaries_per_lang == 0
    assert load_config(with_setting("pipeline.mode", "project")).pipeline.target_langs == [
        "zh", "de", "es", "pt", "ar"]


def test_the_command_line_maps_onto_the_config() -> None:
    config = config_from_args(parsed("--mode", "project", "--target-lang", "DE, zh", "--retry-failed",
                                     "--no-verify", "--canaries", "2", "--endpoint", "http://127.0.0.1:8/v1"))
    assert config.pipeline.target_langs == ["de", "zh"] and not config.pipeline.verify
    assert config.pipeline.retry_failed == sorted(TRANSIENT_REASONS)
    assert config.pipeline.canaries.per_lang == 2 and config.canaries_per_lang == 2
    assert config.backend.endpoints == ["http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1"]
    assert config.pipeline.constrain == "none"  # auto: no constraint for an endpoint URL
    assert config_from_args(parsed()).pipeline.retry_failed == []
    with pytest.raises(UsageError, match="--retry-failed: unknown reason"):
        config_from_args(parsed("--retry-failed", " , "))
    local = load_config({**BASE, "backend": {"endpoints": ["local"]}})
    assert local.pipeline.constrain == "spans" and local.canaries_per_lang == 0
    assert local.cache_path == Path("out") / "cache.sqlite"


def test_the_command_line_defaults_are_the_config_defaults() -> None:
    from_cli = config_from_args(parsed()).model_dump()
    from_config = AnnotationConfig(**BASE).model_dump()
    assert from_cli == from_config
    assert (from_config["input"]["max_sentence_chars"], from_config["input"]["max_sentence_words"]) == (
        InputLimits.max_chars, InputLimits.max_words)
    assert ",".join(sorted(TRANSIENT_REASONS)) == TRANSIENT_HELP


def test_the_config_round_trips_and_its_manifest_copy_holds_no_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-SECRET0123456789"
    monkeypatch.setenv("MY_KEY", secret)
    config = config_from_args(parsed("--api-key-env", "MY_KEY", "--shard", "1/4", "--cache", "c.sqlite"))
    dumped = config.manifest_config()
    assert secret not in json.dumps(dumped)
    assert dumped["backend"]["api_key_env"] == "MY_KEY"  # the variable's name, never its value
    assert load_config(dumped) == config  # a manifest's config rebuilds the run's config


def test_the_manifest_records_the_scrubbed_config(tmp_path: Path) -> None:
    from openie4pp.shards import ShardWriter

    config = config_from_args(parsed("--endpoint", "http://127.0.0.1:8/v1?api-version=1&token=QUERYSECRET"))
    with ShardWriter(tmp_path, build_config=config.manifest_config()):
        pass
    recorded = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["build_config"]
    assert "QUERYSECRET" not in json.dumps(recorded)
    assert recorded["pipeline"] == config.manifest_config()["pipeline"]
