"""docs/CONFIG.md names every setting's environment variable (a new setting is documented
where users look for it)."""

from dataclasses import fields
from pathlib import Path

from architect.config import Config, env_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"


def test_every_setting_is_in_config_md():
    text = DOC.read_text()
    missing = [env_name(f.name) for f in fields(Config) if env_name(f.name) not in text]
    assert not missing, f"docs/CONFIG.md does not name {missing}"
