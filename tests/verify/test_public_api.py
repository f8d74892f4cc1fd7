"""The public verification API: re-exports, and hypothesis only on first use of what needs it."""

from __future__ import annotations

import subprocess
import sys

import onnxsmith.verify as verify


def test_importing_verify_does_not_import_hypothesis():
    code = ("import sys, onnxsmith.verify as v; assert 'hypothesis' not in sys.modules; "
            "v.assert_equivalent, v.check_equivalent, v.EquivalenceReport; "
            "v.check_pass; assert 'hypothesis' not in sys.modules; v.models; assert 'hypothesis' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_resolves():
    for name in verify.__all__:
        assert getattr(verify, name) is not None
