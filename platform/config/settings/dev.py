"""One-command local run (`make run`): SQLite, local storage, filesystem broker, a generated secret key."""

import os
import secrets
from pathlib import Path

_data_dir = Path(os.environ.get("SLIPWAY_DATA_DIR", Path(__file__).resolve().parents[3] / "var"))
_key_file = _data_dir / "secret-key"
if "SLIPWAY_SECRET_KEY" not in os.environ and "SLIPWAY_SECRET_KEY_FILE" not in os.environ:
    # A per-checkout key, made once and kept, so sessions survive restarts.
    if not _key_file.exists():
        _data_dir.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    os.environ["SLIPWAY_SECRET_KEY_FILE"] = str(_key_file)
# DEBUG stays off (base: SLIPWAY_DEBUG, default false): `make run` is left running on laptops,
# and Django's debug pages list every URL and show settings and frame locals to any caller.

from config.settings.base import *  # noqa: E402,F403
