"""requirements.txt (what the seed guide's `pip install -r requirements.txt` reads) pins the
same runtime dependencies as pyproject.toml, the one list the package installs."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_requirements_txt_pins_what_pyproject_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text()
             .splitlines()]
    assert sorted(line for line in lines if line) == sorted(deps)
