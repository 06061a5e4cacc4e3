"""Optional verifiers for dictionary candidates: a Python callable or an OpenAI-compatible endpoint.

A verifier gets `(answer, candidates)` and returns the candidates that mean the same as the answer
(the paper filtered WordNet candidates with an LLM). Off by default and never required: without
one, every WordNet candidate is kept (up to --max-forms).
"""
from __future__ import annotations

import importlib
import json
import os
import re
import urllib.error
import urllib.request
from typing import Callable

from ..errors import UserError

KEY_ENV = "ANCHORLAB_VERIFIER_KEY"  # sent as a Bearer token when set
PROMPT = (
    "You check synonyms for a visual question answering dataset.\n"
    "Answer: \"{answer}\"\n"
    "Candidates: {candidates}\n"
    "Which candidates can replace the answer with the same meaning? Reply with a JSON list of the "
    "candidates to keep, copied exactly, and nothing else (an empty list if none)."
)


def checked(verifier: Callable, name: str) -> Callable[[str, list[str]], list[str]]:
    """Wrap a verifier so a bad return value is a user error naming the verifier and the answer."""

    def verify(answer: str, candidates: list[str]) -> list[str]:
        try:
            kept = verifier(answer, list(candidates))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: report it with context
            raise UserError(f"verifier {name} failed on answer {answer!r}: {type(exc).__name__}: {exc}") from exc
        if isinstance(kept, str) or not all(isinstance(k, str) for k in (kept or [])):
            raise UserError(f"verifier {name} must return a list of the candidates to keep; for {answer!r} it "
                            f"returned {kept!r}")
        return list(kept or [])

    return verify


def from_callable(spec: str) -> Callable[[str, list[str]], list[str]]:
    """`package.module:function` -> the function (imported from the current environment)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"--verifier {spec!r}: expected MODULE:FUNCTION, e.g. mypkg.checks:keep_synonyms")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"--verifier {spec!r}: cannot import {module_name} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"--verifier {spec!r}: {module_name} has no function {attr!r}")
    return checked(fn, spec)


def from_url(url: str, model: str | None = None, timeout: float = 60.0) -> Callable[[str, list[str]], list[str]]:
    """An OpenAI-compatible chat-completions endpoint (`.../v1` or the full `.../chat/completions` URL)."""
    endpoint = url.rstrip("/")
    if not endpoint.endswith("/chat/completions"):
        endpoint += "/chat/completions"

    def ask(answer: str, candidates: list[str]) -> list[str]:
        body = {"model": model or "default", "temperature": 0,
                "messages": [{"role": "user", "content": PROMPT.format(answer=answer, candidates=json.dumps(
                    candidates, ensure_ascii=False))}]}
        headers = {"Content-Type": "application/json"}
        if os.environ.get(KEY_ENV):
            headers["Authorization"] = f"Bearer {os.environ[KEY_ENV]}"
        request = urllib.request.Request(endpoint, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                reply = json.loads(response.read().decode())
            text = reply["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise UserError(f"--verifier-url {endpoint}: no usable reply for answer {answer!r} ({exc})") from None
        match = re.search(r"\[.*\]", text, re.S)
        try:
            kept = json.loads(match.group(0)) if match else None
        except json.JSONDecodeError:
            kept = None
        if not isinstance(kept, list):
            raise UserError(
                f"--verifier-url {endpoint}: expected a JSON list for answer {answer!r}, got {text[:200]!r}"
            )
        return [k for k in kept if isinstance(k, str) and k in candidates]

    return checked(ask, endpoint)
