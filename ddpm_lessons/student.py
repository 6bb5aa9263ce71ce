"""Student versions of the notebooks: solutions removed, outputs cleared, checks kept.

A code cell tagged ``solution`` holds worked answers: plain assignments (``answer_kl = "..."``) for the derivation
checks, and functions (``def my_q_sample(sched, x0, t, noise): ...``) for the code exercises
(:mod:`ddpm_lessons.checks.code`). The student version keeps each assignment's name and replaces its value with
``...`` (Ellipsis), and keeps each function's ``def`` line(s) and docstring and replaces its body with ``...``, so
the grading cell that follows still runs and reports "Not yet answered" / "Not yet implemented" instead of
crashing. Imports in a solution cell are kept; any other statement is replaced by a comment. Markdown cells tagged
``solution`` become a prompt. Every output and execution count is cleared.

nbformat is imported only when notebooks are read or written (errata 27: ``ddpm-lessons --help`` and
``studentize_source`` work on a plain install without the dev extra).

    ddpm-lessons export-student OUT/            # all notebooks/ into OUT/
    ddpm-lessons export-student OUT/ --force    # allow writing into a folder that already holds notebooks
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only; nbformat is imported where notebooks are read or written
    import nbformat

__all__ = ["studentize_source", "studentize", "export_student"]

SOLUTION_TAG = "solution"
PROMPT = "# Your answer: replace each ... with your expression, typed as a string, e.g. \"1 - beta_t\"."
CODE_PROMPT = "# Your code: write the body of each function below in place of ..., then run the grading cell."


def studentize_source(source: str) -> str:
    """Blank the right-hand side of every top-level assignment in a solution cell's code.

    ``answer_mean = "sqrt(alpha_bar_t)*x_0"`` becomes the prompt line followed by ``answer_mean = ...``.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return PROMPT + "\n# (the solution cell could not be parsed; write your answer here)\n"
    src_lines = source.splitlines()
    has_def = any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in tree.body)
    has_answer = any(isinstance(n, ast.Assign | ast.AnnAssign) for n in tree.body)
    lines = ([CODE_PROMPT] if has_def else []) + ([PROMPT] if has_answer or not has_def else [])
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            lines.append(ast.unparse(node))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.extend(_stub_lines(node, src_lines))
        elif isinstance(node, ast.Assign):
            targets = " = ".join(ast.unparse(t) for t in node.targets)
            lines.append(f"{targets} = ...")
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            lines.append(f"{ast.unparse(node.target)}: {ast.unparse(node.annotation)} = ...")
        else:
            lines.append("# (a step of the worked solution was removed here)")
    return "\n".join(lines).strip("\n") + "\n"


def _stub_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, src: list[str]) -> list[str]:
    """The function's decorators, ``def`` line(s) and docstring from the source, then ``...`` as its body."""
    body0 = node.body[0]
    if body0.lineno == node.lineno:  # a one-line ``def f(x): return x``: rebuild the header from the tree
        unparsed = ast.unparse(node).splitlines()
        n_head = next(i for i, line in enumerate(unparsed) if line.lstrip().startswith(("def ", "async def ")))
        return ["", *unparsed[: n_head + 1], "    ...", ""]
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    doc = isinstance(body0, ast.Expr) and isinstance(body0.value, ast.Constant) and isinstance(body0.value.value, str)
    end = body0.end_lineno if doc else body0.lineno - 1  # last line to keep (1-based)
    return ["", *src[first - 1:end], " " * body0.col_offset + "...", ""]


def studentize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy of ``nb`` with solutions removed and outputs cleared (the input is not modified)."""
    import nbformat

    nb = nbformat.from_dict(nb)  # deep copy
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if SOLUTION_TAG in tags:
                cell.source = studentize_source(cell.source)
        elif SOLUTION_TAG in tags:
            cell.source = "*Your answer here.*"
    nb.metadata.pop("widgets", None)  # saved widget state belongs to the executed version
    return nb


def export_student(out_dir: str | Path, src_dir: str | Path = "notebooks", force: bool = False) -> list[Path]:
    """Write the student version of every ``*.ipynb`` in ``src_dir`` to ``out_dir``; returns the written paths.

    Refuses (ValueError) to write into ``src_dir`` itself, and into a folder that already holds notebooks unless
    ``force`` is set, so no one's work is overwritten by accident.
    """
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    sources = sorted(src.glob("*.ipynb"))
    if not sources:
        raise ValueError(f"no notebooks found in {src}")
    if out == src:
        raise ValueError("out_dir must differ from the source folder: the export would overwrite the solutions")
    if out.exists() and any(out.glob("*.ipynb")) and not force:
        raise ValueError(f"{out} already holds notebooks; choose an empty folder or pass force=True (--force)")
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        nb = nbformat.read(path, as_version=4)
        target = out / path.name
        nbformat.write(studentize(nb), target)
        written.append(target)
    return written


def _run(args: argparse.Namespace) -> int:
    try:
        written = export_student(args.out_dir, args.src, force=args.force)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    for p in written:
        print(f"wrote {p}")
    return 0


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser("export-student", help="write the notebooks with solutions removed")
    p.add_argument("out_dir", help="folder for the student notebooks")
    p.add_argument("--src", default="notebooks", help="folder of the full notebooks (default: notebooks)")
    p.add_argument("--force", action="store_true", help="write into a folder that already holds notebooks")
    p.set_defaults(handler=_run)
