"""A fake-server responder that bills tokens like a real server: the domain answers of
:func:`annotate_responder.respond`, with ``usage`` counted by a real tokenizer over the chat as a
template renders it.

Why: ``annotate --dry-run`` promises token counts within 10 % of what a run is then billed, and the
fake server's default usage (whitespace words of the message texts) is no server's. Here the prompt
is rendered as ChatML (``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then
``<|im_start|>assistant\\n``, what Qwen's and many other templates produce) and tokenised whole,
and the completion is the answer's tokens plus the end-of-turn token, as llama.cpp and vLLM count.

Configured by the environment variable ``OPENIE4PP_USAGE_TOKENIZER`` (a ``tokenizer.json``, read at
the first request, in the server's process). Use: ``python tests/fake_openai_server.py --responder
usage_responder:respond`` with the variable set (``fake_openai_server.spawn(..., env={...})``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from annotate_responder import respond as domain_respond

TOKENIZER_ENV = "OPENIE4PP_USAGE_TOKENIZER"
START, END = "<|im_start|>", "<|im_end|>"


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from tokenizers import Tokenizer

    path = os.environ.get(TOKENIZER_ENV)
    if not path:
        raise RuntimeError(f"usage_responder: set {TOKENIZER_ENV} to a tokenizer.json")
    return Tokenizer.from_file(path)


def render_chat(messages: list[dict[str, Any]]) -> str:
    """The prompt text a ChatML template makes of ``messages``, with the reply's turn opened."""
    turns = [f"{START}{m.get('role', 'user')}\n{m.get('content', '')}{END}\n" for m in messages]
    return "".join(turns) + f"{START}assistant\n"


def count(text: str) -> int:
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


def respond(body: dict[str, Any]) -> dict[str, Any]:
    """The domain answer with the usage a server would report for it."""
    reply = dict(domain_respond(body))
    content = str(reply.get("content", ""))
    reply["prompt_tokens"] = count(render_chat(list(body.get("messages") or [])))
    reply["completion_tokens"] = count(content) + 1  # the end-of-turn token the model emits
    return reply
