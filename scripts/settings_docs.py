"""The README's configuration tables, generated from ``config.SETTINGS``.

``make docs`` rewrites the tables between the markers in README.md;
``--check`` only says whether they are current (tests/test_settings.py does
the same). The tables are never edited by hand: change ``config.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config import ENVIRONMENTS, SETTINGS, Setting  # noqa: E402

README = ROOT / "README.md"
BEGIN = "<!-- settings: generated from config.py by `make docs`; edit SETTINGS there -->"
END = "<!-- end of settings -->"


def default_cell(setting: Setting) -> str:
    """The default, then each environment whose default differs, as ``15; testing: 3``."""
    if setting.documented:
        return setting.documented
    if callable(setting.default):
        raise ValueError(f"{setting.name}: a computed default needs `documented=` to say it")
    base = setting.default_for("base", {})
    cell = [_value(setting, base)]
    for environment in ENVIRONMENTS:
        value = setting.default_for(environment, {})
        if value != base:
            cell.append(f"{environment}: {_value(setting, value)}")
    return "; ".join(cell)


def _value(setting: Setting, value: object) -> str:
    shown = setting.show(value)
    return shown if shown == "unset" else f"`{shown}`"


def settings_markdown() -> str:
    """One table per group of ``SETTINGS``, between the markers."""
    lines = [BEGIN]
    for group, settings in SETTINGS.items():
        lines += ["", f"### {group}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
        lines += [f"| `{setting.name}` | {default_cell(setting)} | {setting.meaning} |"
                  for setting in settings]
    lines += ["", END]
    return "\n".join(lines)


def rewrite(text: str) -> str:
    """``text`` with the part between the markers (markers included) generated anew."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md needs the markers {BEGIN!r} and {END!r}, in that order")
    return text[:start] + settings_markdown() + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if README.md's tables are not what config.py says")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = rewrite(current)
    if args.check:
        if wanted != current:
            print("README.md's configuration tables are stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        README.write_text(wanted)
        print("README.md: configuration tables rewritten from config.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
