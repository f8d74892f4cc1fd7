"""The console script leaves its objects to the OS at exit; an in-process ``main(argv)`` does not."""

from __future__ import annotations

import subprocess
import sys

import onnx
from onnx import TensorProto
from onnx import helper as oh

from onnxsmith import cli


def test_in_process_calls_register_nothing(monkeypatch):
    registered = []
    monkeypatch.setattr(cli.atexit, "register", registered.append)
    assert cli.main(["passes"]) == 0
    assert registered == []


def test_the_process_entry_point_freezes_at_exit_and_still_writes_its_output(tmp_path):
    source, output = tmp_path / "in.onnx", tmp_path / "out.onnx"
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = oh.make_graph([oh.make_node("Identity", ["x"], ["t"]), oh.make_node("Relu", ["t"], ["y"])], "g", [x], [y])
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), source)
    # atexit runs the last registered handler first: main's hook (registered inside main) runs before this one.
    script = ("import gc, sys, atexit\n"
              "atexit.register(lambda: print('objects frozen at exit:', gc.get_freeze_count() > 0))\n"
              "from onnxsmith.cli import main\n"
              "sys.exit(main())\n")
    proc = subprocess.run([sys.executable, "-c", script, str(source), str(output), "-q"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [n.op_type for n in onnx.load(output).graph.node] == ["Relu"]
    assert proc.stdout.rstrip().endswith("objects frozen at exit: True")
