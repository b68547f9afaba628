"""A tiny, deterministic stand-in for an LLM API, so the notebooks need no network and no keys.

``FakeLLM.complete(prompt)`` waits a little (like a network call would), then returns text
that depends only on the prompt: the same prompt always gives the same answer. It can also
misbehave on purpose, the way real APIs do: fail the first few calls of a prompt with a
``RateLimitError`` (``flaky=``), or hang (``hang_on=``), so retries and timeouts have
something real to handle.

Swap it for a real client by giving your own object an ``async complete(prompt) -> str``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter

__all__ = ["FakeLLM", "RateLimitError"]

_WORDS = (
    "workflow state agent branch join retry checkpoint resume review draft outline insight "
    "reader example pattern signal robust simple parallel clear concise practical"
).split()


_ADJECTIVES = ("Simple", "Practical", "Clear", "Fast", "Friendly", "Robust")


class RateLimitError(RuntimeError):
    """What a busy LLM API answers: try again later."""


class FakeLLM:
    """Deterministic fake LLM.

    Args:
        latency: Seconds each call takes (simulated network time).
        flaky: The first ``flaky`` calls for each distinct prompt raise ``RateLimitError``.
        hang_on: Calls whose prompt contains this text never return (until cancelled).

    Example:
        >>> llm = FakeLLM(latency=0)
        >>> import asyncio
        >>> asyncio.run(llm.complete("Write a title about joins"))[:6]
        'Title:'
    """

    def __init__(self, latency: float = 0.05, flaky: int = 0, hang_on: str | None = None) -> None:
        self.latency = latency
        self.flaky = flaky
        self.hang_on = hang_on
        self.calls = 0
        self.failures = 0
        self._seen: Counter[str] = Counter()

    async def complete(self, prompt: str, max_words: int = 40) -> str:
        """Answer ``prompt`` with deterministic text (after ``latency`` seconds)."""
        self.calls += 1
        self._seen[prompt] += 1
        if self.hang_on and self.hang_on in prompt:
            await asyncio.Event().wait()  # never set: only a timeout or cancel ends this
        await asyncio.sleep(self.latency)
        if self._seen[prompt] <= self.flaky:
            self.failures += 1
            raise RateLimitError(f"429 Too Many Requests (call {self._seen[prompt]} for this prompt)")
        return self._text(prompt, max_words)

    @staticmethod
    def _text(prompt: str, max_words: int) -> str:
        digest = hashlib.sha256(prompt.encode()).digest()
        topic = prompt.rsplit("about", 1)[-1].strip(" .:?") if "about" in prompt else "workflows"
        if prompt.lower().startswith("write a title"):
            return f"Title: {topic.title()} Made {_ADJECTIVES[digest[0] % len(_ADJECTIVES)]}"
        if prompt.lower().startswith("rate"):
            return str(5 + digest[0] % 5)  # a score from 5 to 9
        n = min(max_words, 12 + digest[1] % 20)
        words = [_WORDS[b % len(_WORDS)] for b in (digest * 4)[:n]]
        return f"On {topic}: " + " ".join(words) + "."

    def __repr__(self) -> str:
        return f"FakeLLM(latency={self.latency}, flaky={self.flaky}, calls={self.calls}, failures={self.failures})"
