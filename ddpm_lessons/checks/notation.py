"""Input notations: LaTeX, paper-style ASCII and Unicode answers, rewritten as the checker's plain syntax.

Learners type what they read: ``\\frac{\\beta_t (1-\\bar\\alpha_{t-1})}{1-\\bar\\alpha_t}`` (LaTeX, as our own
derivations render it), ``(1-alpha_bar_{t-1})/(1-alpha_bar_t) beta_t`` (paper ASCII), ``β_t(1−ᾱₜ₋₁)/(1−ᾱ_t)``
(Unicode pasted from a PDF), ``np.sqrt(alpha_prod_t)`` (code). This module turns all of them into one plain syntax
(names such as ``alpha_bar_prev``, explicit ``*`` and ``**``) *as text*; :mod:`.parser` then parses that text with
its whitelist and builds the SymPy tree. Nothing here evaluates anything: it is string and token rewriting only,
with every loop bounded by the input length and LaTeX nesting capped at :data:`MAX_LATEX_DEPTH`.

Three front ends, applied in this order by :func:`front`:
  * LaTeX (only when the text has a backslash or ``$``): ``\\frac``, ``\\sqrt``, Greek letters, ``\\bar``,
    ``\\tilde``, ``\\hat``, ``\\mathbf``-style wrappers, ``\\cdot``/``\\times``, ``\\left``/``\\right``, spacing
    commands. Any other command (``\\input``, ``\\def``, ``\\newcommand``, ...) is rejected by name.
  * Unicode: Greek letters with macron/tilde/hat, √, subscript and superscript digits, ₜ, ₋, ₊, ·, ×, −, and the
    non-breaking, thin and zero-width spaces a PDF leaves in copied text.
  * Tokens (:func:`to_plain`): subscripts in braces or parentheses (``alpha_bar_{t-1}``, ``x_(0)``), function-style
    time arguments (``beta(t)``), ``np.``/``math.``/``torch.`` prefixes, implicit multiplication (``2x_0``,
    ``sqrt(a) x_0``, ``(1+w)eps_c``), √ or a bare function binding the next atom (``√ᾱ_t x_0``, ``log sigma2``),
    and names in other notations mapped to the checker's (``abar_t``, ``alphabar_t``, diffusers' ``alpha_prod_t``).

Ambiguous input is an error with both readings, never a silent guess: ``alpha_bar_t-1`` (ᾱ_{t-1} or ᾱ_t − 1?),
``√1−ᾱ_t`` (the bar over the radicand is lost in a PDF copy), a mix of DDIM's convention (α_t for ᾱ_t) with DDPM's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["NotationError", "front", "latex_to_text", "unicode_to_text", "split_chain", "to_plain", "NOTATION",
           "MACROS", "is_name_like", "MAX_LATEX_DEPTH"]

MAX_LATEX_DEPTH = 40  # nesting of LaTeX groups and arguments
ROOT = "\ue000"  # private-use character standing for a √ that binds the next atom


class NotationError(ValueError):
    """The text cannot be read unambiguously; ``str(err)`` says why and what to type instead."""


# -- LaTeX ------------------------------------------------------------------------------------------------------------
_GREEK_TEX = {
    "alpha": "alpha", "beta": "beta", "gamma": "gamma", "delta": "delta", "epsilon": "eps", "varepsilon": "eps",
    "eta": "eta", "theta": "theta", "lambda": "lambda", "mu": "mu", "nu": "nu", "pi": "pi", "rho": "rho",
    "sigma": "sigma", "tau": "tau", "phi": "phi", "varphi": "phi", "omega": "omega", "xi": "xi", "zeta": "zeta",
    "kappa": "kappa", "psi": "psi", "chi": "chi",
}
_ACCENTS = {"bar": "bar", "overline": "bar", "tilde": "tilde", "widetilde": "tilde", "hat": "hat", "widehat": "hat"}
_WRAPPERS = {"mathbf", "boldsymbol", "bm", "mathrm", "mathit", "text", "textrm", "operatorname", "mathsf", "mathcal",
             "mathbb", "vec", "bold", "pmb"}
_FUNCS_TEX = {"log": "log", "ln": "ln", "exp": "exp", "sin": "sin", "cos": "cos"}
_SPACES_TEX = {",", ";", ":", "!", " ", "quad", "qquad", "enspace", "thinspace", "medspace", "thickspace"}
_SIZERS = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "middle"}
_OPS_TEX = {"cdot": "*", "times": "*", "ast": "*", "div": "/", "cdotp": "*"}
_FRACS = {"frac", "dfrac", "tfrac", "cfrac"}
_TEX_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[{}^_$&]|[^\\{}^_$&]+", re.S)


def latex_to_text(text: str) -> str:
    """LaTeX math -> the checker's text (``\\frac{a}{b}`` -> ``((a)/(b))``, ``\\bar\\alpha_{t-1}`` ->
    ``alpha_bar_{t-1}``). Raises :class:`NotationError` for unsupported commands and for deep nesting."""
    toks = _TEX_TOKEN.findall(text)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def skip_spaces() -> None:
        nonlocal pos
        while pos < len(toks) and toks[pos].isspace():
            pos += 1

    def argument(depth: int) -> str:
        """One macro argument: a {group} or a single token (``\\frac12``, ``\\bar\\alpha``)."""
        nonlocal pos
        while pos < len(toks) and not toks[pos].strip():
            pos += 1
        tok = peek()
        if tok is None:
            raise NotationError("a LaTeX command is missing its argument (e.g. `\\sqrt{...}`)")
        if tok == "{":
            pos += 1
            return sequence(depth + 1, closing="}")
        if tok.startswith("\\"):
            return command(depth + 1)
        if tok in ("}", "^", "_", "$", "&"):
            raise NotationError(f"a LaTeX command is missing its argument before `{tok}`")
        tok = tok.lstrip()
        pos += 1
        head, rest = tok[0], tok[1:]
        if rest:
            pos -= 1
            toks[pos] = rest  # \frac12: the argument is one character; the rest stays in the input
        return head

    def command(depth: int) -> str:
        nonlocal pos
        if depth > MAX_LATEX_DEPTH:
            raise NotationError(f"the LaTeX is too deeply nested (more than {MAX_LATEX_DEPTH} levels)")
        tok = toks[pos]
        pos += 1
        name = tok[1:]
        if name in _GREEK_TEX:
            return " " + _GREEK_TEX[name] + " " if name != "pi" else " pi "
        if name in _SPACES_TEX or name in ("displaystyle", "textstyle", "limits", "nonumber", "notag"):
            return " "
        if name in _SIZERS:
            if peek() is not None and peek().startswith("."):  # \right. : an invisible delimiter
                toks[pos] = toks[pos][1:]
            return " "
        if name == "{":
            return "("
        if name == "}":
            return ")"
        if name in _OPS_TEX:
            return _OPS_TEX[name]
        if name in _FUNCS_TEX:
            return " " + _FUNCS_TEX[name] + " "
        if name in _FRACS:
            num = argument(depth)
            den = argument(depth)
            return f"(({num})/({den}))"
        if name == "sqrt":
            skip_spaces()
            if peek() == "[" or (peek() or "").startswith("["):
                raise NotationError("only square roots are accepted: write `\\sqrt{...}` (no `\\sqrt[n]{...}`)")
            return f" sqrt({argument(depth)})"
        if name in _ACCENTS:
            inner = argument(depth).strip()
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", inner):
                raise NotationError(f"`\\{name}` is only accepted over a single symbol (e.g. `\\bar\\alpha_t`)")
            return f" {inner}_{_ACCENTS[name]}"
        if name in _WRAPPERS:
            return argument(depth)
        if name in ("begin", "end"):
            argument(depth)  # the environment's name (aligned, equation, ...)
            return " "
        if name == "\\":
            return "\n"
        if name in ("approx", "simeq", "equiv"):
            raise NotationError(f"`\\{name}`: write each step of a derivation with `=`")
        if name == "nabla":
            raise NotationError("`\\nabla` (a score) is typed as the symbol `score`")
        raise NotationError(f"the LaTeX command `\\{name}` is not supported here (accepted: \\frac, \\sqrt, Greek "
                            "letters, \\bar, \\tilde, \\hat, \\cdot, \\times, \\left( \\right), \\log, \\exp, "
                            "\\mathbf and spacing)")

    def sequence(depth: int, closing: str | None = None) -> str:
        nonlocal pos
        if depth > MAX_LATEX_DEPTH:
            raise NotationError(f"the LaTeX is too deeply nested (more than {MAX_LATEX_DEPTH} levels)")
        out: list[str] = []
        while pos < len(toks):
            tok = toks[pos]
            if tok == "}":
                if closing == "}":
                    pos += 1
                    return "".join(out)
                raise NotationError("unbalanced braces: a `}` has no matching `{`")
            if tok == "{":
                pos += 1
                out.append("(" + sequence(depth + 1, closing="}") + ")")
            elif tok.startswith("\\"):
                out.append(command(depth + 1))
            elif tok == "^":
                pos += 1
                out.append("^(" + argument(depth + 1) + ")")
            elif tok == "_":
                pos += 1
                while out and out[-1].endswith(" "):  # `\alpha _t`: the subscript belongs to the name before
                    out[-1] = out[-1].rstrip()
                    if not out[-1]:
                        out.pop()
                out.append("_{" + argument(depth + 1).strip() + "}")
            elif tok in "$&":
                pos += 1
                out.append(" ")
            else:
                pos += 1
                out.append(tok)
        if closing is not None:
            raise NotationError("unbalanced braces: a `{` is not closed")
        return "".join(out)

    return sequence(0).replace("[", "(").replace("]", ")")


# -- Unicode ---------------------------------------------------------------------------------------------------------
_COMBINING = {"\u0304": "bar", "\u0305": "bar", "\u0303": "tilde", "\u0302": "hat"}
_GREEK_UNI = {
    "\u03b1": "alpha", "\u03b2": "beta", "\u03b3": "gamma", "\u03b4": "delta", "\u03b5": "eps", "\u03f5": "eps",
    "\u03b7": "eta", "\u03b8": "theta", "\u03bb": "lambda", "\u03bc": "mu", "\u03bd": "nu", "\u03c0": "pi",
    "\u03c1": "rho", "\u03c3": "sigma", "\u03c4": "tau", "\u03c6": "phi", "\u03d5": "phi", "\u03c9": "omega",
    "\u03be": "xi", "\u03b6": "zeta", "\u03ba": "kappa", "\u03c8": "psi", "\u03c7": "chi",
}
_PRECOMPOSED = {"\u1fb1": "alpha_bar", "\u0101": "a_bar", "\u1e21": "g_bar", "\u00e3": "a_tilde", "\u0113": "e_bar"}
_SUB = dict(zip("\u2080\u2081\u2082\u2083\u2084\u2085\u2086\u2087\u2088\u2089\u209c\u209b\u2099\u208b\u208a\u208d\u208e"
                "\u1d62\u2c7c\u2090\u2091\u2092\u2095\u2096\u2097\u2098\u209a",
                "0123456789tsn-+()ijaeohklmp", strict=True))
_SUP = dict(zip("\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u207a\u207d\u207e\u1d40",
                "0123456789-+()T", strict=True))
_CHARS = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-", "\u00d7": "*", "\u00b7": "*",
    "\u22c5": "*", "\u2217": "*", "\u2219": "*", "\u00f7": "/", "\u2044": "/", "\u2215": "/", "\u00bd": "(1/2)",
    "\u221a": ROOT, "\u2206": "Delta", "\uff08": "(", "\uff09": ")", "\uff0b": "+", "\uff0d": "-", "\u2009": " ",
    "\u00a0": " ", "\u202f": " ", "\u2002": " ", "\u2003": " ", "\u2004": " ", "\u2005": " ", "\u2006": " ",
    "\u2007": " ", "\u2008": " ", "\u200a": " ", "\u205f": " ", "\u3000": " ", "\u200b": "", "\u200c": "",
    "\u200d": "", "\u2060": "", "\ufeff": "", "\u2061": "", "\u2062": " ", "\u2063": "", "\u2064": "",
    "\u2248": "=", "\u2261": "=",
}


def unicode_to_text(text: str) -> str:
    """Unicode maths (ᾱ, β̃, √, ₜ₋₁, ², ·, −, thin spaces) -> the checker's text. Unknown characters are kept (the
    parser's character screen names them)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _GREEK_UNI or ch in _PRECOMPOSED:
            name = _GREEK_UNI.get(ch) or _PRECOMPOSED[ch]
            i += 1
            while i < n and text[i] in _COMBINING:
                name += "_" + _COMBINING[text[i]]
                i += 1
            if name in ("a_bar",):
                name = "alpha_bar"
            # a flattened subscript pasted from a PDF: ᾱt, εθ (a letter or digit right after the Greek letter)
            if i < n and (text[i].isascii() and text[i].isalnum()):
                name += "_"
            elif i < n and text[i] == "\u03b8" and name.startswith("eps"):
                name += "_"
            out.append(" " + name if out and out[-1][-1:].isalnum() else name)
            continue
        if ch in _COMBINING:  # x̄: an accent on an ASCII letter
            if out and out[-1][-1:].isalpha():
                out.append("_" + _COMBINING[ch])
            i += 1
            continue
        if ch in _SUB:
            j = i
            while j < n and text[j] in _SUB:
                j += 1
            sub = "".join(_SUB[c] for c in text[i:j])
            out.append("_{" + sub + "}")
            i = j
            continue
        if ch in _SUP:
            j = i
            while j < n and text[j] in _SUP:
                j += 1
            out.append("^(" + "".join(_SUP[c] for c in text[i:j]) + ")")
            i = j
            continue
        out.append(_CHARS.get(ch, ch))
        i += 1
    return "".join(out)


# whole LaTeX forms that stand for one symbol of the course (as the catalogue renders them)
_TEX_SYMBOLS = [
    (re.compile(r"\\(?:lVert|\|)\s*\\mu_(?:\{1\}|1)\s*-\s*\\mu_(?:\{2\}|2)\s*\\(?:rVert|\|)\s*\^(?:\{2\}|2)"),
     " delta2 "),
    (re.compile(r"\\nabla_(?:\{x_(?:\{t\}|t)\}|x_t)\s*\\log\s*q(?:_t)?\s*(?:\\left)?\(\s*x_(?:\{t\}|t)\s*"
                r"(?:\\right)?\)"), " score "),
]


def front(text: str) -> str:
    """Apply the LaTeX (when the text looks like LaTeX) and Unicode front ends: the result is ASCII-ish text."""
    if "\\" in text or "$" in text:
        for pattern, name in _TEX_SYMBOLS:
            text = pattern.sub(name, text)
        text = latex_to_text(text)
    if not text.isascii():
        text = unicode_to_text(text)
    return text


# -- chains ----------------------------------------------------------------------------------------------------------
def split_chain(text: str) -> list[str]:
    """Split ``a = b = c`` into its parts (``==``, ``:=``, ``≈`` count as ``=``); a line break without ``=`` is a
    space. A text without ``=`` is one part."""
    text = text.replace(":=", "=").replace("==", "=")
    return [re.sub(r"\s*\n\s*", " ", part).strip() for part in text.split("=")]


_NAME_LIKE = re.compile(r"\s*[A-Za-z][A-Za-z0-9_]*(_\{[^{}]{1,20}\}|_\([^()]{1,20}\))?"
                        r"(_[A-Za-z]+)?\s*(\([A-Za-z0-9_,{}\s|;-]{0,60}\))?\s*")


def is_name_like(part: str) -> bool:
    """True for a left-hand side that names a quantity (``mu_tilde``, ``x_{t-1}``, ``sigma_t(eta)``, ``KL``)."""
    return bool(_NAME_LIKE.fullmatch(part)) and bool(part.strip())


# -- names -----------------------------------------------------------------------------------------------------------
_BASES: dict[str, tuple[str, ...]] = {
    "alpha_bar": ("alpha_bar", "alphabar", "abar", "a_bar", "bar_alpha", "baralpha", "alpha_prod", "alphas_bar",
                  "alphas_prod"),
    "alpha": ("alpha", "alphas", "current_alpha"),
    "beta_tilde": ("beta_tilde", "betatilde", "tilde_beta", "btilde", "b_tilde", "beta_post", "posterior_variance"),
    "beta": ("beta", "betas", "current_beta"),
    "sigma": ("sigma",),
    "x": ("x",),
    "snr": ("snr", "SNR", "lambda_snr"),
}
_SUBS: dict[str, tuple[str, ...]] = {
    "t": ("t",),
    "prev": ("prev", "tm1", "t_1", "t_minus_1", "tminus1", "t_prev", "s"),
    "tm2": ("tm2", "t_2", "t_minus_2", "tminus2"),
    "0": ("0",),
    "1": ("1",),
    "T": ("T",),
}
_TARGET = {
    ("alpha_bar", "t"): "alpha_bar_t", ("alpha_bar", "prev"): "alpha_bar_prev", ("alpha_bar", "1"): "alpha_bar_1",
    ("alpha_bar", "T"): "alpha_bar_T", ("alpha", "t"): "alpha_t", ("alpha", "prev"): "alpha_tm1",
    ("beta", "t"): "beta_t", ("beta", "prev"): "beta_tm1", ("beta_tilde", "t"): "beta_tilde_t",
    ("sigma", "t"): "sigma_t", ("sigma", "1"): "sigma1", ("x", "t"): "x_t", ("x", "0"): "x_0",
    ("x", "tm2"): "x_tm2", ("x", "prev"): "x_tm1", ("snr", "t"): "snr_t", ("snr", "prev"): "snr_prev",
}


def _build_notation() -> dict[str, str]:
    out: dict[str, str] = {}
    for (base, sub), target in _TARGET.items():
        for b in _BASES[base]:
            for s in _SUBS[sub]:
                if s == "s" and base not in ("alpha_bar",):
                    continue  # alpha_bar_s for the previous step is a DDIM/VDM habit; other bases keep s
                out.setdefault(f"{b}_{s}", target)
                if not b[-1].isalpha() or not s[0].isalpha():
                    out.setdefault(f"{b}{s}", target)  # abar0? no: only where the join is unambiguous
    out.update({
        "alpha_bar_t_prev": "alpha_bar_prev", "alpha_prod_t_prev": "alpha_bar_prev", "abar_t_prev": "alpha_bar_prev",
        "alpha_bar_t_1": "alpha_bar_prev", "alpha_bar_previous": "alpha_bar_prev",
        "alpha_bar_tp1": "alpha_bar_next", "xt": "x_t", "x0": "x_0", "x_tminus2": "x_tm2", "x_start": "x_0",
        "x_noisy": "x_t", "xtm1": "x_tm1", "x_prev": "x_tm1",
        "epsilon": "eps", "eps_theta": "eps", "epsilon_theta": "eps", "eps_hat": "eps", "epsilon_hat": "eps",
        "eps_hat_theta": "eps", "eps_theta_hat": "eps", "e_theta": "eps", "eps_pred": "eps", "pred_eps": "eps",
        "model_output": "eps", "epsilon_t": "eps", "eps_t": "eps", "noise_pred": "eps", "noise": "eps",
        "eps_cond": "eps_c", "eps_uncond": "eps_u", "epsilon_c": "eps_c", "epsilon_u": "eps_u",
        "eps_conditional": "eps_c", "eps_unconditional": "eps_u", "noise_pred_text": "eps_c",
        "noise_pred_uncond": "eps_u", "eps_theta_c": "eps_c", "eps_theta_u": "eps_u", "eps_hat_c": "eps_c",
        "eps_hat_u": "eps_u", "epsc": "eps_c", "epsu": "eps_u",
        "mu_1": "mu1", "mu_2": "mu2", "sigma_1": "sigma1", "sigma_2": "sigma2", "guidance_scale": "s",
        "beta_t_minus_1": "beta_tm1", "alpha_t_minus_1": "alpha_tm1", "betatilde_t": "beta_tilde_t",
        "score_t": "score", "s_theta": "score", "grad_log_q": "score", "grad_log_p": "score",
        "varphi": "phi", "sqrt_beta": "sqrt_beta_t",
    })
    return out


NOTATION: dict[str, str] = _build_notation()
# names that stand for an expression of the question's symbols (diffusers' and improved-diffusion's names)
MACROS: dict[str, str] = {
    "beta_prod_t": "1 - alpha_bar_t", "beta_prod_t_prev": "1 - alpha_bar_prev",
    "one_minus_alpha_bar_t": "1 - alpha_bar_t", "sqrt_alpha_bar_t": "sqrt(alpha_bar_t)",
    "sqrt_alpha_prod_t": "sqrt(alpha_bar_t)", "sqrt_one_minus_alpha_bar_t": "sqrt(1 - alpha_bar_t)",
    "sqrt_one_minus_alpha_prod_t": "sqrt(1 - alpha_bar_t)", "sqrt_alpha_bar_prev": "sqrt(alpha_bar_prev)",
    "sqrt_alpha_t": "sqrt(alpha_t)", "sqrt_beta_t": "sqrt(beta_t)",
}
_PREV_OF = {"alpha_bar": "alpha_bar_prev", "alphabar": "alpha_bar_prev", "abar": "alpha_bar_prev",
            "alpha": "alpha_tm1", "beta": "beta_tm1", "x": "x_tm1", "sigma": "sigma_tm1",
            "beta_tilde": "beta_tilde_tm1"}
_SHOWN_PREV = {"alpha_bar_prev": "ᾱ_{t-1}", "alpha_tm1": "α_{t-1}", "beta_tm1": "β_{t-1}", "x_tm1": "x_{t-1}",
               "sigma_tm1": "σ_{t-1}", "beta_tilde_tm1": "β̃_{t-1}"}
_SHOWN_T = {"alpha_bar": "ᾱ_t", "alphabar": "ᾱ_t", "abar": "ᾱ_t", "alpha": "α_t", "beta": "β_t", "x": "x_t",
            "sigma": "σ_t", "beta_tilde": "β̃_t"}
_PREFIX = re.compile(r"(?<![A-Za-z0-9_.])(?:np|numpy|math|torch|sp|sympy|mp|mpmath|jnp|F)\.(?=[A-Za-z])")
_FUNCTION_WORDS = ("sqrt", "exp", "log", "ln", "abs", "Abs", "sin", "cos")
_TIME_ARG = re.compile(r"\(\s*t\s*(-\s*1)?\s*\)")  # beta(t), SNR(t-1): a function of time written as a call
_SUBSCRIPT_BODY = re.compile(r"[A-Za-z0-9+\-\s]{1,12}")


@dataclass
class _Tok:
    kind: str  # "num", "name", "op", "root"
    text: str
    space_before: bool


def _subscript_name(content: str) -> str:
    c = re.sub(r"\s+", "", content)
    c = {"t-1": "tm1", "t-2": "tm2", "t+1": "tp1", "(t-1)": "tm1"}.get(c, c)
    if not re.fullmatch(r"[A-Za-z0-9]+", c):
        raise NotationError(f"the subscript `{{{content}}}` is not understood: use `t`, `t-1`, `t-2` or `0`, "
                            "e.g. `alpha_bar_{t-1}`")
    return c


_TOKEN = re.compile(r"(?P<num>\d(?:_?\d)*(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
                    r"|(?P<name>[A-Za-z][A-Za-z0-9_]*)|(?P<op>\*\*|//|[-+*/^(),\[\]{}=])|(?P<root>" + ROOT + ")"
                    r"|(?P<space>\s+)|(?P<other>.)", re.S)


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos, n, space = 0, len(text), False
    while pos < n:
        m = _TOKEN.match(text, pos)
        assert m is not None  # `other` matches any character
        kind = m.lastgroup
        tok = m.group()
        pos = m.end()
        if kind == "space":
            space = True
            continue
        if kind == "other":
            out.append(_Tok("other", tok, space))
        elif kind == "name":
            # a subscript in braces or parentheses: alpha_bar_{t-1}, x_(0), alpha_bar_(t - 1)
            if pos < n and text[pos] in "{(" and tok.endswith("_"):
                close = "}" if text[pos] == "{" else ")"
                end = text.find(close, pos + 1)
                body = text[pos + 1:end] if end > 0 else ""
                if end > 0 and _SUBSCRIPT_BODY.fullmatch(body):
                    tok = tok.rstrip("_") + "_" + _subscript_name(body)
                    pos = end + 1
                elif close == "}":
                    raise NotationError(f"the subscript `{{{body[:20]}}}` of `{tok.rstrip('_')}` is not understood: "
                                        "use `t`, `t-1`, `t-2` or `0`, e.g. `alpha_bar_{t-1}`")
            # a function-style time argument: beta(t), alpha_bar(t), x(t)
            elif pos < n and text[pos] == "(" and tok not in _FUNCTION_WORDS:
                m = _TIME_ARG.match(text, pos)
                if m:
                    tok = tok + ("_tm1" if m.group(1) else "_t")
                    pos = m.end()
            out.append(_Tok("name", tok, space))
        else:
            out.append(_Tok(kind, {"{": "(", "}": ")"}.get(tok, tok), space))  # sqrt{...}: braces group
        space = False
    return out


def _base_of(name: str) -> tuple[str, str] | None:
    """('alpha_bar', 't') for alpha_bar_t / abar_t / alphabar_t (bases that have a previous-step form)."""
    m = re.fullmatch(r"(alpha_bar|alphabar|abar|alpha|beta_tilde|beta|x|sigma)_?(t)", name)
    return (m.group(1), m.group(2)) if m else None


def to_plain(text: str, resolve: Callable[[str], str | None], *, ddim: bool = False,
             known_functions: Iterable[str] = _FUNCTION_WORDS) -> str:
    """Rewrite front-end text into the parser's plain syntax.

    Args:
        text: output of :func:`front` (one expression, no ``=``).
        resolve: maps a typed name to the question's canonical name, or None when it is not one of them.
        ddim: the question is a DDIM one: read DDIM's own convention (α_t for ᾱ_t) when the answer uses it alone.
        known_functions: names that are functions (``sqrt(...)``).

    Raises:
        NotationError: for ambiguous input, with the readings and what to type for each.
    """
    text = _PREFIX.sub("", text)
    toks = _tokens(text)
    for t in toks:
        if t.kind == "name" and re.fullmatch(r"alphas?_cumprod(_prev)?", t.text):
            raise NotationError(
                "diffusers' `alphas_cumprod` is indexed from 0: `alphas_cumprod[t]` is our ᾱ_{t+1}, so "
                "`alphas_cumprod[t-1]` = ᾱ_t. Type `alpha_bar_t` (ᾱ_t) or `alpha_bar_prev` (ᾱ_{t-1})")
    funcs = set(known_functions)
    # -- ambiguity: alpha_bar_t-1 (ᾱ_{t-1} or ᾱ_t - 1?) ----------------------------------------------------------
    for i, tok in enumerate(toks[:-2]):
        nxt, after = toks[i + 1], toks[i + 2]
        if (tok.kind == "name" and nxt.text == "-" and not nxt.space_before and after.text == "1"
                and not after.space_before and (i + 3 >= len(toks) or toks[i + 3].kind != "num")):
            base = _base_of(tok.text)
            if base is not None and resolve(tok.text) is not None:
                prev = _PREV_OF.get(base[0], "")
                shown_prev = _SHOWN_PREV.get(prev, "")
                typed_prev = f" (type `{prev}`)" if resolve(prev) is not None else ""
                raise NotationError(
                    f"`{tok.text}-1` is ambiguous: did you mean {shown_prev}{typed_prev} or "
                    f"{_SHOWN_T.get(base[0], tok.text)} − 1 (type `{tok.text} - 1`, with spaces)?")
    # -- √ or a bare function binding a number before + or -: √1−ᾱ_t ------------------------------------------------
    for i, tok in enumerate(toks[:-2]):
        if (tok.kind == "root" or (tok.kind == "name" and tok.text == "sqrt" and toks[i + 1].text != "(")) \
                and toks[i + 1].kind == "num" and toks[i + 2].text in "+-":
            num, op = toks[i + 1].text, toks[i + 2].text
            if i + 3 < len(toks) and toks[i + 3].kind == "name" and resolve(toks[i + 3].text) is None:
                continue  # an unknown name follows: the parser's "unknown symbol" message comes first
            nxt = toks[i + 3].text if i + 3 < len(toks) else "..."
            nxt = (resolve(nxt) or nxt) if i + 3 < len(toks) and toks[i + 3].kind == "name" else nxt
            raise NotationError(f"`√{num} {op} {nxt}` is ambiguous (a PDF copy loses the bar over the radicand): did "
                                f"you mean √({num} {op} {nxt}) (type `sqrt({num} {op} {nxt})`) or √{num} {op} {nxt} "
                                f"(type `sqrt({num}) {op} {nxt}`)?")
    # -- a model output written as a call: eps_theta(x_t, t), \epsilon_\theta(x_t), s_theta(x, t) ----------------------
    toks = _drop_model_arguments(toks, resolve)
    # -- names -----------------------------------------------------------------------------------------------------
    resolved: list[str | None] = [resolve(t.text) if t.kind == "name" and t.text not in funcs else None
                                  for t in toks]
    if ddim:
        _ddim_convention(toks, resolved, resolve)
    # -- emit, with implicit multiplication and function binding --------------------------------------------------
    out: list[str] = []

    def atom_end(i: int) -> int:
        """Index just past the primary starting at token i (a name, a number, a (group), or a function call)."""
        if i >= len(toks):
            raise NotationError("`√` or a function name at the end: it needs an argument, e.g. `sqrt(alpha_t)`")
        t = toks[i]
        if t.kind == "root" or (t.kind == "name" and t.text in funcs):
            return atom_end(i + 1)
        if t.text == "(":
            depth = 0
            for j in range(i, len(toks)):
                depth += toks[j].text == "("
                depth -= toks[j].text == ")"
                if depth == 0:
                    return j + 1
            return len(toks)
        if t.kind in ("name", "num"):
            return i + 1
        raise NotationError(f"`√` or a function must be followed by what it applies to, not `{t.text}`")

    def value_like(kind: str, text: str) -> bool:  # can end a factor
        return kind == "num" or text == ")" or (kind == "name" and text not in funcs)

    def starts_factor(idx: int) -> bool:
        t = toks[idx]
        return t.kind in ("num", "name", "root") or t.text == "("

    closers: dict[int, int] = {}  # token index -> number of ")" to emit after it

    for i, t in enumerate(toks):
        if i > 0 and starts_factor(i):
            prev = toks[i - 1]
            if value_like(prev.kind, prev.text):
                if prev.kind == "num" and t.kind == "num":
                    raise NotationError(f"two numbers in a row (`{prev.text} {t.text}`): join them with an "
                                        "operator")
                if t.text == "(" and prev.kind == "name" and resolved[i - 1] is None:
                    pass  # f(...) with an unknown f: let the parser say what f is
                else:
                    out.append("*")
        if t.kind == "root":
            out.append("sqrt(")
            end = atom_end(i + 1)
            closers[end - 1] = closers.get(end - 1, 0) + 1
        elif t.kind == "name" and t.text in funcs and (i + 1 >= len(toks) or toks[i + 1].text != "("):
            out.append(t.text + "(")
            end = atom_end(i + 1)
            closers[end - 1] = closers.get(end - 1, 0) + 1
        elif t.kind == "name":
            out.append(resolved[i] or t.text)
        elif t.text == "^":
            out.append("**")
        elif t.text == "{":
            out.append("(")
        elif t.text == "}":
            out.append(")")
        else:
            out.append(t.text)
        if closers.get(i):
            out.append(")" * closers[i])
    return " ".join(out)


_MODEL_OUTPUTS = {"eps", "eps_c", "eps_u", "score", "v"}


def _drop_model_arguments(toks: list[_Tok], resolve: Callable[[str], str | None]) -> list[_Tok]:
    """``eps_theta(x_t, t)`` is the network's output, the symbol ``eps``: drop the argument list of a model output
    when it is written like a call (with ``theta``/``hat`` in the name, or with a comma in the list)."""
    out: list[_Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        out.append(t)
        if (t.kind == "name" and resolve(t.text) in _MODEL_OUTPUTS and i + 1 < len(toks) and toks[i + 1].text == "("
                and not toks[i + 1].space_before):
            j = i + 2
            while j < len(toks) and (toks[j].kind in ("name", "num") or toks[j].text == ","):
                j += 1
            inner = toks[i + 2:j]
            if (j < len(toks) and toks[j].text == ")" and inner
                    and (any(x.text == "," for x in inner) or re.search(r"theta|hat|pred", t.text))):
                i = j + 1
                continue
        i += 1
    return out


def _ddim_convention(toks: list[_Tok], resolved: list[str | None], resolve: Callable[[str], str | None]) -> None:
    """DDIM writes α_t for ᾱ_t: read it so when the answer uses a DDIM-only name (α_{t-1}) and no ᾱ."""
    names = [(i, t.text) for i, t in enumerate(toks) if t.kind == "name"]
    ddim_prev = [i for i, n in names if resolved[i] is None and NOTATION.get(n) == "alpha_tm1"]
    if not ddim_prev:
        return
    bars = [n for i, n in names if (resolved[i] or "").startswith("alpha_bar")]
    if bars:
        shown = ", ".join(dict.fromkeys(f"`{toks[i].text}`" for i in ddim_prev))
        raise NotationError(
            f"which convention do you mean? {shown} is DDIM's notation (there α_t means ᾱ_t and α_{{t-1}} means "
            f"ᾱ_{{t-1}}), but `{bars[0]}` is DDPM's. Write it all in DDPM notation: `alpha_bar_t`, `alpha_bar_prev`")
    for i, n in names:
        target = NOTATION.get(n, n)
        if target == "alpha_tm1":
            resolved[i] = resolve("alpha_bar_prev")
        elif target == "alpha_t" or n == "alpha_t":
            resolved[i] = resolve("alpha_bar_t")


def make_resolver(names: Iterable[str], aliases: Mapping[str, str], extra: Iterable[str] = ()) -> Callable[
        [str], str | None]:
    """A resolver for :func:`to_plain`: exact names, then ``aliases``, then :data:`NOTATION`, when the target is one
    of ``names`` (``extra``: further accepted names, e.g. macros and constants)."""
    allowed = set(names)
    keep = set(extra)

    def resolve(name: str) -> str | None:
        if name in allowed or name in keep:
            return name
        if name in aliases:  # the question's own aliases override the general notation table
            target = aliases[name]
            return target if target in allowed or target in keep else None
        target = NOTATION.get(name)
        return target if target is not None and (target in allowed or target in keep) else None
    return resolve
