"""Student export: solutions blanked, outputs cleared, nothing overwritten; the student notebooks run and their
checks report "Not yet answered"."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from ddpm_lessons import student

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _nb(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Exercise"),
        nbformat.v4.new_code_cell('answer_a = "sqrt(alpha_bar_t)*x_0"\nanswer_b: str = "1 - alpha_bar_t"\nprint(1)',
                                  metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("print(answer_a)"),
        nbformat.v4.new_markdown_cell("The answer is 42.", metadata={"tags": ["solution"]}),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="x\n")]
    nb.cells[2].execution_count = 3
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(nb, src / "01_x.ipynb")
    return src


def test_studentize_blanks_solutions_and_clears_outputs(tmp_path):
    src = _nb(tmp_path)
    before = (src / "01_x.ipynb").read_text()
    (out,) = student.export_student(tmp_path / "out", src)
    assert (src / "01_x.ipynb").read_text() == before  # the source is untouched
    nb = nbformat.read(out, as_version=4)
    sol = nb.cells[1].source
    assert "answer_a = ..." in sol and "answer_b: str = ..." in sol
    assert "sqrt(alpha_bar_t)" not in sol and "print(1)" not in sol
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None
    assert "42" not in nb.cells[3].source


def test_solution_functions_keep_signature_and_docstring(tmp_path):
    from ddpm_lessons.checks.code import check_function, exercises

    for ex in exercises():
        src = "import math\nimport torch\n\n" + ex.solution
        out = student.studentize_source(src)
        assert "import math" in out and "import torch" in out
        body = ex.solution.split('"""')[-1]  # the worked solution's code after the docstring
        assert body.strip() and body.strip() not in out, ex.id
        ns: dict = {}
        ref: dict = {}
        exec(out, ns)  # the student cell runs
        exec(src, ref)
        assert ns[ex.func_name].__doc__ == ref[ex.func_name].__doc__  # the docstring is kept verbatim
        res = check_function(ex.id, ns[ex.func_name])
        assert res.status == "invalid" and "Not yet implemented" in res.feedback, (ex.id, res.feedback)
    one_liner = student.studentize_source("@decorate\ndef f(x): return x * 2\n")
    assert "@decorate" in one_liner and "def f(x):" in one_liner and "x * 2" not in one_liner


def test_module_imports_without_nbformat():
    """Errata 27: student.py imports nbformat only to read or write notebooks."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['nbformat'] = None\n"
            "from ddpm_lessons import student\n"
            "print(student.studentize_source('def f(x):\\n    return x\\n'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "def f(x):" in out.stdout and "return x" not in out.stdout


def test_export_refuses_to_overwrite(tmp_path):
    src = _nb(tmp_path)
    student.export_student(tmp_path / "out", src)
    with pytest.raises(ValueError, match="already holds notebooks"):
        student.export_student(tmp_path / "out", src)
    with pytest.raises(ValueError, match="must differ"):
        student.export_student(src, src, force=True)
    with pytest.raises(ValueError, match="no notebooks"):
        student.export_student(tmp_path / "o2", tmp_path / "empty")
    assert student.export_student(tmp_path / "out", src, force=True)


def test_every_notebook_has_checked_exercises():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "solution" in c.get("metadata", {}).get("tags", [])]
        assert tagged, f"{path.name} has no cell tagged 'solution'"
        assert any("check(" in c.source for c in nb.cells if c.cell_type == "code"), f"{path.name} checks nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_notebook_runs_and_reports_not_yet_answered(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("DDPM_LESSONS_PROFILE", "ci")
    monkeypatch.setenv("DDPM_LESSONS_CACHE", os.environ.get("DDPM_LESSONS_CACHE", str(tmp_path / "cache")))
    nb = student.studentize(nbformat.read(path, as_version=4))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                   ).execute()  # raises CellExecutionError if any cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "\n".join(str(o.get("text", "")) + "".join(str(v) for v in o.get("data", {}).values()) for o in outputs)
    assert "not yet answered" in text.lower()
    if any("check_function(" in c.source for c in nb.cells if c.cell_type == "code"):
        assert "not yet implemented" in text.lower()
