"""The verdict of one check, displayed as one coloured line in Jupyter and as plain text in a terminal."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckResult", "STATUSES"]

STATUSES = ("correct", "known_mistake", "incorrect", "invalid", "timeout")

# status -> (label, icon, colour); colours readable on light and dark themes
_STYLE = {
    "correct": ("correct", "\u2705", "#1a7f37"),
    "known_mistake": ("known mistake", "\u26a0\ufe0f", "#b35900"),
    "incorrect": ("incorrect", "\u274c", "#cf222e"),
    "invalid": ("invalid input", "\u26d4", "#6e7781"),
    "timeout": ("timeout", "\u23f1\ufe0f", "#8250df"),
}
_PLAIN_ICON = {"correct": "[ok]", "known_mistake": "[mistake]", "incorrect": "[wrong]", "invalid": "[invalid]",
               "timeout": "[timeout]"}


@dataclass(frozen=True)
class CheckResult:
    """Outcome of ``check(question_id, answer)``.

    Attributes:
        question: the question id.
        status: one of ``correct``, ``known_mistake``, ``incorrect``, ``invalid``, ``timeout``.
        feedback: what is right or wrong, for the learner.
        mistake: the matched mistake tag (``known_mistake`` only), e.g. ``dropped_sqrt``, ``swapped_kl_args``.
        evidence: what the verdict rests on, e.g. ``numeric: 40 random points at 30 digits, max rel. error 1e-30;
            symbolic: the difference cancels to 0``.
        answer: the answer as parsed (SymPy's printing), or the raw text when it did not parse.
        details: extra machine-readable facts, e.g. ``{"coefficients": {"x_t": "right", "x_0": "wrong"}}``.
        elapsed_ms: wall time of the check (not part of any display, so notebook outputs stay reproducible).
    """

    question: str
    status: str
    feedback: str
    mistake: str | None = None
    evidence: str = ""
    answer: str | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    elapsed_ms: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        """True only for a correct answer."""
        return self.status == "correct"

    def __str__(self) -> str:
        label = _STYLE[self.status][0]
        tag = f" ({self.mistake})" if self.mistake else ""
        line = f"{_PLAIN_ICON[self.status]} {self.question}: {label}{tag} -- {self.feedback}"
        return line + (f"\n    evidence: {self.evidence}" if self.evidence else "")

    def __repr__(self) -> str:
        return f"CheckResult(question={self.question!r}, status={self.status!r}, mistake={self.mistake!r})"

    def _repr_html_(self) -> str:
        label, icon, colour = _STYLE[self.status]
        text = html.escape(self.feedback)
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
        tag = f" <code>{html.escape(self.mistake)}</code>" if self.mistake else ""
        return (f'<div style="border-left:4px solid {colour};padding:2px 8px;margin:2px 0">'
                f'{icon} <b style="color:{colour}">{label}</b>{tag} '
                f'<span style="opacity:0.7">[{html.escape(self.question)}]</span> {text}</div>')

    def _repr_markdown_(self) -> str:
        label, icon, _ = _STYLE[self.status]
        tag = f" `{self.mistake}`" if self.mistake else ""
        return f"{icon} **{label}**{tag} [`{self.question}`] {self.feedback}"
