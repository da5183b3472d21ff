"""The generated stubs in src/transcription/v1 match protos/ (run `make protos` when this fails)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_generated_code_is_current(tmp_path):
    protos = sorted((ROOT / "protos" / "transcription" / "v1").glob("*.proto"))
    assert protos
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
        ]
        + [str(p.relative_to(ROOT / "protos")) for p in protos],
        check=True,
        cwd=ROOT / "protos",
    )
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "transcription" / "v1").iterdir()}
    committed = {p.name: p.read_bytes() for p in (ROOT / "src" / "transcription" / "v1").glob("*_pb2*.py*")}
    assert fresh.keys() == committed.keys()
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code: {stale}; run `make protos`"
