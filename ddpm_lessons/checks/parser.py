"""Safe parser: learner text -> SymPy expression, without ever evaluating Python.

``sympify``/``parse_expr`` call ``eval`` and can run code even with an emptied ``__builtins__``; this module never
does. The text is normalised (``^`` -> ``**``, a few Unicode symbols -> ASCII), screened character by character,
parsed with ``ast.parse(mode="eval")`` and the tree is walked with a whitelist: numbers, the question's declared
symbol names, ``+ - * / **``, unary ``+ -`` and calls of ``sqrt, exp, log, ln, abs``. Length, node count, nesting
depth, integer size and exponent size are capped, so no input can make SymPy build a huge number. The SymPy
expression is built from the tree node by node.

Everything that is not accepted raises :class:`ParseError` with a message meant for a learner ("unknown symbol
`abar` -- did you mean `alpha_bar_t`?", "use `*` for multiplication").
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterable, Mapping

import sympy as sp

from . import notation

__all__ = ["ParseError", "parse", "FUNCTIONS", "MAX_LENGTH", "MAX_NODES", "MAX_DEPTH", "MAX_EXPONENT"]

MAX_LENGTH = 1000  # characters of typed text (a posterior mean in full is ~120)
MAX_NODES = 400  # AST nodes after parsing
MAX_DEPTH = 60  # AST nesting depth; the builder recurses, so this also bounds its stack
MAX_EXPONENT = 64  # |numeric exponent| allowed in a power
MAX_INT_DIGITS = 30  # digits of an integer literal
MAX_FOLD_BITS = 4096  # a numeric power folded by SymPy may not exceed this many bits

FUNCTIONS: dict[str, object] = {
    "sqrt": sp.sqrt,
    "exp": sp.exp,
    "log": sp.log,
    "ln": sp.log,
    "abs": sp.Abs,
    "Abs": sp.Abs,
    "sin": sp.sin,
    "cos": sp.cos,
}

_ALLOWED_CHARS = re.compile(r"[A-Za-z0-9_+\-*/().,\s]*")
_FORBIDDEN_HINTS = [
    ("=", "write only the expression (the right-hand side), without `=`"),
    ("[", "square brackets are not allowed; use parentheses `( )`"),
    ("]", "square brackets are not allowed; use parentheses `( )`"),
    ("{", "braces are not allowed; write subscripts with an underscore, e.g. `x_t`"),
    ("}", "braces are not allowed; write subscripts with an underscore, e.g. `x_t`"),
    ("'", "quotes are not allowed: type the expression itself"),
    ('"', "quotes are not allowed: type the expression itself"),
    (":", "`:` is not allowed: type a single arithmetic expression"),
    ("|", "`|...|` is not allowed; use `abs(...)`"),
    ("%", "`%` is not allowed"),
    ("!", "`!` is not allowed"),
    ("<", "comparisons are not allowed: type the expression only"),
    (">", "comparisons are not allowed: type the expression only"),
    ("@", "`@` is not allowed; use `*`"),
    ("&", "`&` is not allowed"),
    ("~", "`~` is not allowed"),
    (";", "`;` is not allowed: type a single expression"),
    ("#", "comments (`#`) are not allowed"),
    ("?", "`?` is not allowed"),
    ("`", "backticks are not allowed"),
]

# Names learners often type for the symbols of this course, mapped to the canonical name they probably meant.
_LIKELY = {
    "abar": ["alpha_bar_t"], "abar_t": ["alpha_bar_t"], "alphabar": ["alpha_bar_t"], "alpha_bar": ["alpha_bar_t"],
    "a_bar": ["alpha_bar_t"], "alphabar_t": ["alpha_bar_t"], "ab": ["alpha_bar_t"], "alphas_cumprod": ["alpha_bar_t"],
    "abar_prev": ["alpha_bar_prev"], "abar_tm1": ["alpha_bar_prev"], "alpha_bar_t_1": ["alpha_bar_prev"],
    "alpha_bar_t_minus_1": ["alpha_bar_prev"], "alpha_bar_tminus1": ["alpha_bar_prev"],
    "alpha_bar_t1": ["alpha_bar_prev"], "alpha_bar_s": ["alpha_bar_prev"],
    "alpha": ["alpha_t"], "a_t": ["alpha_t"], "a": ["alpha_t"], "beta": ["beta_t"], "b_t": ["beta_t"],
    "beta_tilde": ["beta_tilde_t"], "btilde": ["beta_tilde_t"], "sigma": ["sigma_t"], "sigma_sq": ["sigma_t"],
    "x": ["x_t", "x_0"], "x_tilde": ["x_t"], "e": ["eps", "exp"], "noise": ["eps"], "eps_theta": ["eps"],
    "epsilon_theta": ["eps"], "eps_hat": ["eps"], "e_theta": ["eps"], "z_t": ["x_t"],
    "eps_cond": ["eps_c"], "eps_uncond": ["eps_u"], "epsc": ["eps_c"], "epsu": ["eps_u"],
    "eps_conditional": ["eps_c"], "eps_unconditional": ["eps_u"], "guidance_scale": ["s", "w"], "gamma": ["w"],
    "mu_1": ["mu1"], "mu_2": ["mu2"], "sigma_1": ["sigma1"], "sigma_2": ["sigma2"], "D": ["d"], "dim": ["d"],
    "grad_log_p": ["score"], "s_theta": ["score"], "nabla": ["score"],
}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "mu", "nu", "xi",
          "rho", "sigma", "tau", "phi", "chi", "psi", "omega"}
_KNOWN_FUNCTION_WORDS = {
    "tan", "tanh", "sinh", "cosh", "log10", "log2", "pow", "max", "min", "sum", "prod", "erf",
    "gamma", "Gamma", "factorial", "floor", "ceil", "sign", "round", "int", "float",
}


class ParseError(ValueError):
    """The text is not a valid answer; ``str(err)`` is a message for the learner."""


def _screen_characters(text: str) -> None:
    if _ALLOWED_CHARS.fullmatch(text):
        return
    for ch, hint in _FORBIDDEN_HINTS:
        if ch in text:
            raise ParseError(hint)
    bad = next(c for c in text if not _ALLOWED_CHARS.fullmatch(c))
    raise ParseError(f"unexpected character {bad!r}: use letters, digits, `_`, `+ - * / ^`, parentheses")


def _syntax_hint(text: str) -> str:
    """A message for text Python's grammar rejects, guessing the usual culprits (every example is valid input)."""
    if re.search(r"\*\*\*|//", text):
        return "`//` and `***` are not operators here: use `/` for division and `^` or `**` for powers"
    depth = 0
    for c in text:
        depth += c == "("
        depth -= c == ")"
        if depth < 0:
            return "unbalanced parentheses: a `)` has no matching `(`"
    if depth > 0:
        return f"unbalanced parentheses: {depth} `(` not closed"
    if re.search(r"[+\-*/]\s*$", text):
        return "the expression ends with an operator"
    if re.search(r"^\s*[*/^]", text):
        return "the expression starts with an operator"
    if re.search(r"[+\-*/]\s*[*/)]", text) or re.search(r"\(\s*[*/]", text):
        return "two operators in a row, or an operator with nothing after it"
    return "this is not a valid arithmetic expression"


def _count_and_depth(tree: ast.AST) -> tuple[int, int]:
    count, max_depth = 0, 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        max_depth = max(max_depth, depth)
        if count > MAX_NODES or max_depth > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return count, max_depth


def suggest(name: str, candidates: Iterable[str]) -> list[str]:
    """Names among ``candidates`` the learner probably meant when typing ``name`` (best first, at most 3)."""
    cands = sorted(set(candidates))
    out: list[str] = []
    for target in _LIKELY.get(name, []) + _LIKELY.get(name.lower(), []):
        if target in cands and target not in out:
            out.append(target)

    def norm(s: str) -> str:
        return s.lower().replace("_", "")

    by_norm: dict[str, list[str]] = {}
    for c in cands:
        by_norm.setdefault(norm(c), []).append(c)
    for hit in difflib.get_close_matches(norm(name), list(by_norm), n=3, cutoff=0.6):
        out.extend(c for c in by_norm[hit] if c not in out)
    for hit in difflib.get_close_matches(name, cands, n=3, cutoff=0.5):
        if hit not in out:
            out.append(hit)
    return out[:3]


def _did_you_mean(options: list[str]) -> str:
    if not options:
        return ""
    quoted = [f"`{o}`" if o not in FUNCTIONS else f"`{o}(...)`" for o in options]
    return " -- did you mean " + (quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]) + "?"


class _Builder:
    def __init__(self, names: Mapping[str, sp.Symbol], aliases: Mapping[str, str], elsewhere: Iterable[str],
                 constants: Mapping[str, sp.Expr]):
        self.names = names
        self.aliases = {a: t for a, t in aliases.items() if t in names}
        self.elsewhere = set(elsewhere) - set(names)
        self.constants = constants

    # -- names -------------------------------------------------------------------------------------------------
    def name(self, ident: str) -> sp.Expr:
        if ident in self.names:
            return self.names[ident]
        if ident in self.aliases:
            return self.names[self.aliases[ident]]
        if ident in self.constants:
            return self.constants[ident]
        if ident.startswith("_"):
            raise ParseError(f"`{ident}`: names starting with `_` are not allowed")
        if ident == "noise" and "eps" in self.names and "z" in self.names:
            raise ParseError("`noise` is ambiguous here: type `eps` for the predicted noise or `z` for the fresh noise")
        if ident in FUNCTIONS:
            raise ParseError(f"`{ident}` is a function: write `{ident}(...)`")
        if ident in ("e", "E") and ident not in self.names:
            raise ParseError(f"`{ident}` is not defined here: write `exp(...)` for powers of Euler's number")
        allowed = sorted(self.names)
        if ident in self.elsewhere or ident in _GREEK:
            hint = _did_you_mean(suggest(ident, allowed))
            raise ParseError(f"`{ident}` is not defined here{hint} (this question uses: {', '.join(allowed)})")
        hint = _did_you_mean(self.canonical(suggest(ident, list(self.names) + list(self.aliases))))
        if hint:
            raise ParseError(f"unknown symbol `{ident}`{hint}")
        raise ParseError(f"unknown symbol `{ident}` (this question uses: {', '.join(allowed)})")

    def canonical(self, options: list[str]) -> list[str]:
        out: list[str] = []
        for o in options:
            o = self.aliases.get(o, o)
            if o not in out:
                out.append(o)
        return out

    # -- tree --------------------------------------------------------------------------------------------------
    def build(self, node: ast.AST) -> sp.Expr:
        if isinstance(node, ast.Expression):
            return self.build(node.body)
        if isinstance(node, ast.Constant):
            return self.constant(node.value)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.build(node.operand)
            if isinstance(node.op, ast.UAdd):
                return self.build(node.operand)
            raise ParseError("only `+` and `-` may precede a term")
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise ParseError(self.reject_message(node))

    def constant(self, value: object) -> sp.Expr:
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise ParseError(f"`{value}` is not a number")
        if isinstance(value, int):
            if len(str(abs(value))) > MAX_INT_DIGITS:
                raise ParseError(f"integer literal too long (more than {MAX_INT_DIGITS} digits)")
            return sp.Integer(value)
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ParseError("number out of range")
            return sp.Rational(repr(value))  # exact decimal value of what was typed
        if isinstance(value, complex):
            raise ParseError("complex numbers are not allowed")
        raise ParseError("only numbers and symbol names are allowed (no strings or other literals)")

    def binop(self, node: ast.BinOp) -> sp.Expr:
        op = node.op
        if isinstance(op, ast.FloorDiv):
            raise ParseError("`//` is integer division: use `/`")
        if not isinstance(op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            raise ParseError(f"operator `{type(op).__name__}` is not allowed; use `+ - * / ^`")
        left = self.build(node.left)
        right = self.build(node.right)
        if isinstance(op, ast.Add):
            out = left + right
        elif isinstance(op, ast.Sub):
            out = left - right
        elif isinstance(op, ast.Mult):
            out = left * right
        elif isinstance(op, ast.Div):
            if right == 0:
                raise ParseError("division by zero")
            out = left / right
        else:
            out = self.power(left, right)
        return self._finite(out)

    def power(self, base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
        if exponent.is_Number:
            if abs(exponent) > MAX_EXPONENT:
                raise ParseError(f"exponent too large (|exponent| <= {MAX_EXPONENT} allowed)")
            if base.is_Rational:
                p, q = base.as_numer_denom()
                bits = max(int(abs(p)).bit_length(), int(abs(q)).bit_length())
                if bits * abs(float(exponent)) > MAX_FOLD_BITS:
                    raise ParseError("number too large: the power evaluates to more than ~1000 digits")
                if base == 0 and exponent < 0:
                    raise ParseError("division by zero (zero to a negative power)")
        return self._finite(sp.Pow(base, exponent))

    def call(self, node: ast.Call) -> sp.Expr:
        func = node.func
        if not isinstance(func, ast.Name):
            if isinstance(func, ast.Attribute):
                raise ParseError("attribute access (`.`) is not allowed")
            raise ParseError("use `*` for multiplication: `(a)(b)` must be written `(a)*(b)`")
        fname = func.id
        if fname not in FUNCTIONS:
            if fname in self.names or fname in self.aliases or fname in self.elsewhere:
                raise ParseError(f"use `*` for multiplication: write `{fname}*(...)`, not `{fname}(...)`")
            if fname.startswith("_"):
                raise ParseError(f"`{fname}`: names starting with `_` are not allowed")
            allowed = ", ".join(sorted(set(FUNCTIONS) - {"Abs"}))
            extra = "" if fname in _KNOWN_FUNCTION_WORDS else _did_you_mean(suggest(fname, FUNCTIONS))
            raise ParseError(f"`{fname}` is not an allowed function{extra} (allowed: {allowed})")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ParseError(f"`{fname}(...)` takes a single plain argument")
        if len(node.args) != 1:
            raise ParseError(f"`{fname}(...)` takes exactly one argument, got {len(node.args)}")
        arg = self.build(node.args[0])
        if fname == "log" or fname == "ln":
            if arg == 0:
                raise ParseError("log(0) is undefined")
        return self._finite(FUNCTIONS[fname](arg))

    @staticmethod
    def _finite(expr: sp.Expr) -> sp.Expr:
        if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan, sp.I):
            raise ParseError("the expression is undefined or not real (division by zero, log of 0 or a negative "
                             "number, or a square root of a negative number)")
        return expr

    @staticmethod
    def reject_message(node: ast.AST) -> str:
        messages = {
            ast.Attribute: "attribute access (`.`) is not allowed",
            ast.Subscript: "indexing (`[...]`) is not allowed",
            ast.Lambda: "`lambda` is not allowed: type an arithmetic expression",
            ast.Tuple: "a single expression is expected (found a comma)",
            ast.Compare: "comparisons are not allowed: type the expression only",
            ast.BoolOp: "`and` / `or` are not allowed",
            ast.IfExp: "`if ... else` is not allowed",
            ast.NamedExpr: "`:=` is not allowed",
            ast.GeneratorExp: "comprehensions are not allowed",
            ast.ListComp: "comprehensions are not allowed",
            ast.SetComp: "comprehensions are not allowed",
            ast.DictComp: "comprehensions are not allowed",
            ast.JoinedStr: "strings are not allowed",
            ast.Starred: "`*` unpacking is not allowed",
            ast.Await: "`await` is not allowed",
        }
        for typ, msg in messages.items():
            if isinstance(node, typ):
                return msg
        return f"`{type(node).__name__}` is not allowed: type an arithmetic expression"


def parse(text: str, names: Mapping[str, sp.Symbol], *, aliases: Mapping[str, str] | None = None,
          elsewhere: Iterable[str] = (), constants: Mapping[str, sp.Expr] | None = None,
          max_length: int = MAX_LENGTH, ddim: bool = False) -> sp.Expr:
    """Parse learner ``text`` into a SymPy expression over the symbols in ``names``.

    The text may be plain (``sqrt(alpha_bar_t)*x_0``), paper ASCII (``sqrt(abar_t) x_0``, ``alpha_bar_{t-1}``),
    Unicode (``√ᾱ_t x₀``) or LaTeX (``\\sqrt{\\bar\\alpha_t}\\,x_0``): :mod:`.notation` rewrites it into the plain
    syntax first, as text; nothing is evaluated.

    Args:
        text: the typed answer; ``^`` and ``**`` both mean power.
        names: symbol name -> SymPy Symbol, the only names allowed.
        aliases: alternative spellings -> canonical name (ignored when the target is not in ``names``).
        elsewhere: names that exist in the course but not in this question ("`beta_t` is not defined here").
        constants: extra constants by name, e.g. ``{"pi": sympy.pi}``.
        max_length: cap on ``len(text)`` (checked before anything else).
        ddim: read DDIM's own convention (α_t for ᾱ_t) when the answer uses it alone.

    Raises:
        ParseError: with a message for the learner, for anything that is not a valid answer.
    """
    if not isinstance(text, str):
        raise ParseError(f"expected text, got {type(text).__name__}")
    if len(text) > max_length:
        raise ParseError(f"answer too long ({len(text)} characters; at most {max_length})")
    consts = constants if constants is not None else {"pi": sp.pi}
    try:
        text = notation.front(text)
        if "=" in text:
            raise ParseError("write only the expression (the right-hand side), without `=`")
        resolve = notation.make_resolver(names, aliases or {}, extra=consts)
        text = notation.to_plain(text, resolve, ddim=ddim, known_functions=FUNCTIONS).strip()
    except notation.NotationError as err:
        raise ParseError(str(err)) from None
    except RecursionError:
        raise ParseError("the expression is too deeply nested") from None
    if not text:
        raise ParseError("empty answer")
    _screen_characters(text)
    kw = re.search(r"(?<![A-Za-z_0-9])(lambda|import|for|while|def|class|yield|await|exec|eval)(?![A-Za-z_0-9])",
                   text)
    if kw:
        raise ParseError(f"`{kw.group(1)}` is not allowed: type an arithmetic expression")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        if "too many nested" in str(err):
            raise ParseError("the expression is too deeply nested") from None
        raise ParseError(_syntax_hint(text)) from None
    except (RecursionError, MemoryError, ValueError):
        raise ParseError("the expression is too deeply nested") from None
    count, depth = _count_and_depth(tree)
    if count > MAX_NODES:
        raise ParseError(f"the expression is too long (more than {MAX_NODES} parts)")
    if depth > MAX_DEPTH:
        raise ParseError(f"the expression is too deeply nested (more than {MAX_DEPTH} levels)")
    builder = _Builder(names, aliases or {}, elsewhere, consts)
    try:
        return builder.build(tree)
    except RecursionError:
        raise ParseError("the expression is too deeply nested") from None
