"""The typed configuration of one annotation run (``openie4pp annotate``, the quickstart, a script).

Why a model and not the command line's ``argparse.Namespace``: the library used to read whatever
attributes a namespace happened to carry, so a typo in a script was silently a default and a
check lived wherever an option was first used. Here every setting has one name, one type and one
check, run when the config is built: a wrong key, type or value is a
:class:`~openie4pp.errors.UsageError` naming the setting's dotted path (``pipeline.concurrency``)
and the command-line option that sets it, before a server starts or a request is sent.

The config holds no secret: the API key is read from the environment variable
:attr:`BackendSettings.api_key_env` *names*, so :meth:`AnnotationConfig.model_dump` is what the
manifest records as ``build_config``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from openie4pp.errors import UsageError
from openie4pp.schema import RejectionReason

from .canaries import CANARY_SOURCES, DEFAULT_PER_LANG, canary_langs
from .card_settings import CardSettings, prompt_refs
from .config_checks import SettingProblem, at_least_one, comma_list, describe, finite, language
from .config_checks import StrictSettings as _Settings
from .inputs import InputLimits, parse_shard
from .stats import Prices

LOCAL = "local"
"""The endpoint that starts the embedded llama.cpp server (``--endpoint local``)."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class BreakerSettings(_Settings):
    """When the circuit breaker stops a run whose endpoints all keep failing."""

    after_s: float = 120.0
    """``--breaker-after-s``: no endpoint answered for this many seconds."""
    after_requests: int = 20
    """``--breaker-after-requests``: this many failed requests in a row."""

    @field_validator("after_s")
    @classmethod
    def _after_s(cls, value: float) -> float | None:
        return finite("--breaker-after-s", value, zero_ok=False)

    @field_validator("after_requests")
    @classmethod
    def _after_requests(cls, value: int) -> int:
        return at_least_one("--breaker-after-requests", value)


class BackendSettings(_Settings):
    """Which LLM answers and how it is reached
    (:func:`~openie4pp.annotate.backends.factory.open_backend` builds it)."""

    kind: Literal["openai", "vllm"] = "openai"
    """``--backend``: OpenAI-compatible HTTP endpoints, or an in-process vLLM engine."""
    endpoints: list[str] = Field(default_factory=list)
    """``--endpoint``: base URLs, or ``["local"]`` for the embedded llama.cpp server."""
    model: str | None = None
    """``--model``: a model name, a path for vLLM, or a GGUF for the embedded server."""
    api_key_env: str = "OPENAI_API_KEY"
    """``--api-key-env``: the *name* of the environment variable that holds the key, never the key."""
    timeout_s: float = 60.0
    """``--timeout``: seconds per request."""
    http_client: Literal["auto", "aiohttp", "openai"] = "auto"
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    max_rpm: float | None = None
    """``--max-rpm``: requests per minute, all endpoints together (None: no limit)."""
    max_tpm: float | None = None
    """``--max-tpm``: tokens per minute, all endpoints together (None: no limit)."""
    tokenizer: str | None = None
    """``--tokenizer``: the model's tokenizer for ``--dry-run`` (a ``tokenizer.json``, a Hugging Face
    tokenizer folder, or a GGUF file); None: the embedded model's or a vLLM model folder's own, else an
    estimate (:mod:`openie4pp.annotate.dry_run`)."""

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoints(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):  # never echo it: it may be the key itself, pasted by mistake
            raise SettingProblem("--api-key-env: give the name of the environment variable that holds the "
                                 "API key (such as OPENAI_API_KEY), not the key")
        return value

    @field_validator("timeout_s")
    @classmethod
    def _timeout(cls, value: float) -> float | None:
        return finite("--timeout", value, zero_ok=False)

    @field_validator("max_rpm", "max_tpm")
    @classmethod
    def _rates(cls, value: float | None, info: Any) -> float | None:
        return finite(f"--{info.field_name.replace('_', '-')}", value, zero_ok=False)

    @model_validator(mode="after")
    def _endpoints_and_model(self) -> BackendSettings:
        if self.kind == "vllm":
            if not self.model:
                raise SettingProblem("--backend vllm needs --model (a hub name or a local path)", ("model",))
            return self
        if LOCAL in self.endpoints and len(self.endpoints) > 1:
            raise SettingProblem("--endpoint local cannot be combined with other endpoints", ("endpoints",))
        if not self.local and not self.model:
            raise SettingProblem("--model is required with --endpoint URL", ("model",))
        # no endpoint at all is the whole config's call: --execution batch-files sends nothing
        return self

    @property
    def local(self) -> bool:
        """The embedded llama.cpp server, started and stopped by the run."""
        return self.kind == "openai" and self.endpoints == [LOCAL]


class CacheSettings(_Settings):
    path: Path | None = None
    """``--cache``: the SQLite response cache (None: ``OUT/cache.sqlite``)."""


class InputSettings(_Settings):
    """What is read, and which of its sentences are annotated."""

    path: str
    """``--input``: JSONL, TXT, Parquet, a records folder, or ``hf:NAME[:split]``."""
    format: Literal["auto", "jsonl", "records", "txt", "parquet", "hf"] = "auto"
    lang: str | None = None
    """``--lang``: the language of inputs that do not say (TXT needs it)."""
    shard: str | None = None
    """``--shard I/N``: this machine's share of the input, by sentence id."""
    limit: int | None = None
    """``--limit``: at most this many input sentences (0: nothing to do)."""
    max_sentence_chars: int = InputLimits.max_chars
    max_sentence_words: int = InputLimits.max_words

    @field_validator("lang")
    @classmethod
    def _lang(cls, value: str | None) -> str | None:
        return None if value is None else language("--lang", value)

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        try:
            parse_shard(value)
        except UsageError as error:
            raise SettingProblem(str(error)) from None
        return value or None

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise SettingProblem(f"--limit {value}: must be 0 or more")
        return value

    @field_validator("max_sentence_chars", "max_sentence_words")
    @classmethod
    def _sentence_bounds(cls, value: int, info: Any) -> int:
        return at_least_one(f"--{info.field_name.replace('_', '-')}", value)

    @property
    def shard_range(self) -> tuple[int, int] | None:
        return parse_shard(self.shard)

    @property
    def limits(self) -> InputLimits:
        return InputLimits(max_chars=self.max_sentence_chars, max_words=self.max_sentence_words)

    @property
    def local_path(self) -> Path | None:
        """The input on disk (None: a Hugging Face dataset)."""
        return None if self.path.startswith("hf:") else Path(self.path)


class CanarySettings(_Settings):
    """Gold benchmark sentences mixed into the run and scored (:mod:`openie4pp.annotate.canaries`)."""

    per_lang: int | Literal["auto"] = "auto"
    """``--canaries``: sentences per language; ``auto``: a default for a remote endpoint, 0 for the
    embedded one, and none (with a warning) when the benchmarks are not installed."""
    langs: list[str] | None = None
    """``--canary-langs`` (None: every language with a gold; in project mode the target languages)."""

    @field_validator("per_lang", mode="before")
    @classmethod
    def _per_lang(cls, value: Any) -> int | str:
        if value == "auto":
            return "auto"
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            per_lang = int(value)
        except (TypeError, ValueError):
            raise SettingProblem(f"--canaries {str(value)!r}: a number of sentences per language, "
                                 "or auto") from None
        if per_lang < 0:
            raise SettingProblem(f"--canaries {per_lang}: must be 0 or more")
        return per_lang

    @field_validator("langs", mode="before")
    @classmethod
    def _split_langs(cls, value: Any) -> Any:
        return comma_list(value) or None

    @field_validator("langs")
    @classmethod
    def _langs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        langs = list(dict.fromkeys(language("--canary-langs", code) for code in value))
        unknown = [lang for lang in langs if lang not in CANARY_SOURCES]
        if unknown:
            raise SettingProblem(f"--canary-langs: no gold canaries for {', '.join(unknown)} "
                                 f"(there are for {', '.join(CANARY_SOURCES)})")
        return langs


class PipelineSettings(_Settings):
    """How each sentence is annotated (:mod:`openie4pp.annotate.pipeline`)."""

    mode: Literal["extract", "project"] = "extract"
    target_langs: list[str] = Field(default_factory=lambda: ["zh", "de", "es", "pt", "ar"])
    """``--target-lang``: the languages project mode translates into (unused in extract mode)."""
    verify: bool = True
    """False (``--no-verify``): no LLM judge; grounding still applies."""
    strict_verdicts: bool = False
    """``--strict-verdicts``: reject the candidates the judge skipped."""
    max_tokens: int = 512
    price_in: float = 0.0
    """``--price-in``: US$ per million prompt tokens, for stats.json."""
    price_out: float = 0.0
    retry_failed: list[str] = Field(default_factory=list)
    """``--retry-failed``: rejection reasons whose items an earlier run gave up on and this one retries."""
    constrain: Literal["auto", "none", "spans"] = "auto"
    """``--constrain``; ``auto`` becomes ``spans`` for the embedded server and ``none`` otherwise when
    the whole config is built (the manifest records what the run used)."""
    canaries: CanarySettings = Field(default_factory=CanarySettings)
    concurrency: int = 16
    """``--concurrency``: items in flight."""

    @field_validator("target_langs", mode="before")
    @classmethod
    def _split_targets(cls, value: Any) -> Any:
        return comma_list(value)

    @field_validator("retry_failed", mode="before")
    @classmethod
    def _split_reasons(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not comma_list(value):
                raise SettingProblem(f"--retry-failed: unknown reason(s) (none given); known: {_known()}")
            return comma_list(value)
        return value

    @field_validator("retry_failed")
    @classmethod
    def _reasons(cls, value: list[str]) -> list[str]:
        reasons = {reason.strip() for reason in value}
        unknown = sorted(reasons - {r.value for r in RejectionReason})
        if unknown:
            raise SettingProblem(f"--retry-failed: unknown reason(s) {', '.join(unknown)}; known: {_known()}")
        return sorted(reasons)

    @field_validator("max_tokens", "concurrency")
    @classmethod
    def _positive(cls, value: int, info: Any) -> int:
        return at_least_one(f"--{info.field_name.replace('_', '-')}", value)

    @field_validator("price_in", "price_out")
    @classmethod
    def _price(cls, value: float, info: Any) -> float | None:
        return finite(f"--{info.field_name.replace('_', '-')}", value, zero_ok=True)

    @model_validator(mode="after")
    def _project_mode(self) -> PipelineSettings:
        if self.mode != "project":
            return self
        if not self.target_langs:
            raise SettingProblem("--target-lang: give at least one language for --mode project (e.g. de,zh)",
                                 ("target_langs",))
        try:
            self.target_langs = list(dict.fromkeys(language("--target-lang", t) for t in self.target_langs))
        except SettingProblem as problem:
            raise SettingProblem(problem.message, ("target_langs",)) from None
        return self

    def check_project_canaries(self, per_lang: int) -> None:
        """Project mode keeps the ``--canary-langs`` with a parallel gold; none is a mistake, but only
        when canaries will be planted (``per_lang``: ``auto`` resolved, which needs the backend)."""
        langs = self.canaries.langs
        if self.mode != "project" or langs is None or per_lang == 0:
            return
        projectable = canary_langs("project", langs)
        if not projectable:
            raise SettingProblem("--canary-langs: project mode has canaries only for "
                                 + ", ".join(canary_langs("project", list(CANARY_SOURCES))),
                                 ("pipeline", "canaries", "langs"))
        self.canaries.langs = projectable

    @property
    def prices(self) -> Prices:
        return Prices(self.price_in, self.price_out)


def _known() -> str:
    return ", ".join(sorted(r.value for r in RejectionReason))


def load_config(data: Any) -> AnnotationConfig:
    """The config from a mapping (a parsed YAML or JSON file); a :class:`UsageError` otherwise."""
    if not isinstance(data, Mapping):
        raise UsageError(f"config: expected a mapping of settings, not {type(data).__name__}")
    return AnnotationConfig(**{str(key): value for key, value in data.items()})


class BatchSettings(_Settings):
    """How ``--execution batch`` / ``batch-files`` uses a provider's Batch API (or files for
    ``vllm run-batch``). The defaults are OpenAI's limits and prices."""

    poll_s: float = 30.0
    """``--batch-poll-s``: the first wait between two looks at a batch; it doubles up to ``poll_max_s``."""
    poll_max_s: float = 600.0
    max_requests_per_file: int = 50_000
    """OpenAI's limit of requests per batch input file."""
    max_bytes_per_file: int = 200_000_000
    """OpenAI's limit of bytes per batch input file."""
    max_line_attempts: int = 3
    """``--batch-attempts``: a request whose line failed this often is given up (its item is rejected
    as ``request_failed``, which ``--retry-failed`` retries)."""
    completion_window: str = "24h"
    price_factor: float = 0.5
    """``--batch-price-factor``: batch prices as a share of online ones (OpenAI: half)."""

    @field_validator("poll_s", "poll_max_s", "price_factor")
    @classmethod
    def _positive_float(cls, value: float, info: Any) -> float | None:
        return finite(f"execution.batch.{info.field_name}", value, zero_ok=info.field_name == "price_factor")

    @field_validator("max_requests_per_file", "max_bytes_per_file", "max_line_attempts")
    @classmethod
    def _positive_int(cls, value: int, info: Any) -> int:
        return at_least_one(f"execution.batch.{info.field_name}", value)


class RaySettings(_Settings):
    """How ``--execution ray`` spreads the run over a Ray cluster (:mod:`openie4pp.annotate.ray_engine`)."""

    address: str | None = None
    """``--ray-address``: a running cluster (``auto``, ``ray://HOST:10001``); None: a local instance."""
    actors: int = 2
    """``--ray-actors``: annotating actors (each with ``pipeline.concurrency`` items in flight)."""
    gpus_per_actor: float = 0.0
    """``--ray-gpus-per-actor``: GPUs each actor holds (``--backend vllm`` needs at least one)."""
    batch_size: int = 64
    """``--ray-batch-size``: items per block, one ``map_batches`` call of an actor (an actor runs one
    block at a time: 4x ``pipeline.concurrency`` or more keeps its slots busy)."""

    @field_validator("actors", "batch_size")
    @classmethod
    def _positive(cls, value: int, info: Any) -> int:
        return at_least_one(f"--ray-{info.field_name.replace('_', '-')}", value)

    @field_validator("gpus_per_actor")
    @classmethod
    def _gpus(cls, value: float) -> float | None:
        return finite("--ray-gpus-per-actor", value, zero_ok=True)


class ExecutionSettings(_Settings):
    """How the requests are sent: one process online (the default), a provider's Batch API in rounds,
    batch files for a self-hosted runner, or a Ray cluster."""

    kind: Literal["online", "batch", "batch-files", "ray"] = "online"
    """``--execution``."""
    batch: BatchSettings = Field(default_factory=BatchSettings)
    ray: RaySettings = Field(default_factory=RaySettings)


class AnnotationConfig(_Settings):
    """Everything one annotation run needs to know, checked as a whole before it starts.

    Built from keywords or with :func:`load_config`, a mistake anywhere in it is a
    :class:`UsageError` naming its dotted path. A part built on its own (``BackendSettings(...)``)
    raises pydantic's ``ValidationError``, also a ``ValueError``: only the whole config converts,
    because pydantic runs a part's own constructor while validating the whole, which would wrap
    the part's error in the whole's."""

    input: InputSettings
    out: Path
    """``--out``: the output folder (shards, rejected.jsonl, stats.json, manifest.json)."""
    backend: BackendSettings
    cache: CacheSettings = Field(default_factory=CacheSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    card: CardSettings = Field(default_factory=CardSettings)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise UsageError(describe(error)) from None

    @model_validator(mode="after")
    def _resolve_auto(self) -> AnnotationConfig:
        # the embedded llama.cpp server takes GBNF grammars; another endpoint's support is unknown
        # until negotiated, so ``auto`` asks it for no constraint
        if self.pipeline.constrain == "auto":
            self.pipeline.constrain = "spans" if self.backend.local else "none"
        self.pipeline.check_project_canaries(self.canaries_per_lang)
        self._check_execution()
        if not self.card.prompts:
            self.card.prompts = prompt_refs(self.pipeline.mode, self.pipeline.verify)
        return self

    def _check_execution(self) -> None:
        kind, backend = self.execution.kind, self.backend
        if backend.kind == "openai" and not backend.endpoints and kind != "batch-files":
            raise SettingProblem("give --endpoint URL (repeatable) or --endpoint local",
                                 ("backend", "endpoints"))
        if kind in ("batch", "batch-files"):
            if backend.kind == "vllm":
                raise SettingProblem(f"--execution {kind} sends HTTP batch files; --backend vllm runs "
                                     "in this process (use --execution online or ray)", ("execution", "kind"))
            if backend.local:
                raise SettingProblem(f"--execution {kind}: the embedded llama.cpp server has no batch API "
                                     "(use --execution online)", ("execution", "kind"))
            if kind == "batch" and len(backend.endpoints) != 1:
                raise SettingProblem("--execution batch submits to one Batch API: give one --endpoint",
                                     ("backend", "endpoints"))
        if kind == "ray" and backend.kind == "vllm" and self.execution.ray.gpus_per_actor <= 0:
            raise SettingProblem("--execution ray with --backend vllm: give --ray-gpus-per-actor "
                                 "(at least 1)",
                                 ("execution", "ray", "gpus_per_actor"))

    @property
    def cache_path(self) -> Path:
        return self.cache.path if self.cache.path is not None else self.out / "cache.sqlite"

    @property
    def canaries_per_lang(self) -> int:
        """``auto`` resolved: each canary costs seconds on the embedded server's CPU, cents remotely."""
        per_lang = self.pipeline.canaries.per_lang
        if per_lang == "auto":
            return 0 if self.backend.local else DEFAULT_PER_LANG
        return per_lang

    @property
    def langs_with_canaries(self) -> list[str]:
        """``--canary-langs``, or by default every language with a gold (project mode: the targets
        with a parallel gold)."""
        canaries = self.pipeline.canaries
        if canaries.langs is not None:
            return canaries.langs
        return canary_langs(self.pipeline.mode, self.pipeline.target_langs)

    def manifest_config(self) -> dict[str, Any]:
        """What the manifest records as ``build_config``: the whole config, JSON-safe (it holds no
        secret; the writer scrubs anything that looks like one all the same). Its ``card`` section
        gives the folder's licence entry and command line (:class:`~openie4pp.shards.ShardWriter`)."""
        return self.model_dump(mode="json")
