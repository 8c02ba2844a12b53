"""Generate the Python gRPC stubs for the voicebridge contracts.

The generated code is committed (reviewers see contract changes, services import it without a build
step); `python proto/generate.py --check` regenerates into a scratch folder and fails on any drift.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTOS = sorted((HERE / "voicebridge" / "v1").glob("*.proto"))
OUT = HERE / "python" / "src"
PACKAGE = Path("voicebridge") / "v1"
INIT = '"""Generated voicebridge.v1 contract stubs (see proto/generate.py); do not edit."""\n'


def generate(out: Path) -> None:
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{HERE}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(HERE)) for p in PROTOS],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out / PACKAGE / "__init__.py").write_text(INIT)


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / PACKAGE
        committed = OUT / PACKAGE
        names = {p.name for p in fresh.iterdir()} | {p.name for p in committed.glob("*.py*")}
        drift = [
            n
            for n in sorted(names)
            if not (fresh / n).exists()
            or not (committed / n).exists()
            or not filecmp.cmp(fresh / n, committed / n, shallow=False)
        ]
    if drift:
        print("generated code is stale, run: python proto/generate.py", *drift, sep="\n  ")
        return 1
    print("generated code matches the protos")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    if parser.parse_args().check:
        return check()
    generate(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
