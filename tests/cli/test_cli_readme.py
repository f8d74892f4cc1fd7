"""The README's commands and code run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from onnxsmith.ir import GraphBuilder, load, op_histogram, save
from onnxsmith.passes import build_pipeline, pipeline_string

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
INSTALL_AND_DEMO = "pip install . && optimize-graph demo"
INSTALL_AND_TEST = "pip install '.[dev]' && python -m pytest -q"


def code_blocks(lang: str | None = None, text: str = README) -> list[str]:
    """Fenced code blocks of ``text``, in order (only those tagged ``lang`` when given)."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)
    return [body for tag, body in blocks if lang is None or tag == lang]


def block_containing(text: str, lang: str | None = None) -> str:
    (found,) = [b for b in code_blocks(lang) if text in b]
    return found


def test_readme_opens_with_the_two_commands():
    title, intro, first_block = README.split("\n\n", 3)[:3]
    assert title == "# onnxsmith"
    assert "```" not in intro
    assert first_block == f"```bash\n{INSTALL_AND_DEMO}\n{INSTALL_AND_TEST}\n```"


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert f"\n{INSTALL_AND_TEST}\n" in script
    assert "-eq 5" in script


def test_pipeline_string_examples_resolve():
    examples = code_blocks(text=README[README.index("### Pipeline strings"):])[0].split()
    assert len(examples) == 3
    for example in examples:
        assert build_pipeline(example)


@pytest.fixture
def double_relu_model(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 4])
    y = b.Relu(b.Relu(b.MatMul(b.Identity(x), b.initializer("w", np.eye(4, dtype=np.float32)))))
    b.output(b.Neg(y), "y")
    save(b.build(), tmp_path / "model.onnx")
    return tmp_path / "model.onnx"


def test_custom_pass_example_runs_through_the_cli(cli, double_relu_model, scratch_registry):
    code = block_containing("@register_pass(", "python")
    name = scratch_registry(re.search(r'@register_pass\("([\w-]+)"\)', code).group(1))
    assert code.startswith("# my_pass.py\n")
    assert len(code.strip().splitlines()) <= 16
    Path("my_pass.py").write_text(code)
    command = block_containing("--load my_pass.py", "bash").strip()

    argv = shlex.split(command)
    assert argv[0] == "optimize-graph"
    result = cli(*argv[1:])

    assert result.code == 0, result.err
    assert any(line.split()[:2] == [name, "yes"] and line.endswith("removed=1") for line in result.out.splitlines())
    assert op_histogram(load("out.onnx"))["Relu"] == 1


def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = block_containing("from onnxsmith import GraphBuilder", "python")

    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})

    out = capsys.readouterr().out
    assert out.splitlines()[0] == pipeline_string(build_pipeline("cleanup"))
    assert out.splitlines()[-1].startswith("equivalent: 1 output(s)")
    assert sorted(op_histogram(load("model.optimized.onnx"))) == ["MatMul"]
