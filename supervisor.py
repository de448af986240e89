"""The supervisor: starts, watches and stops the trading processes for one trading day.

Run ``uv run supervisor.py`` (simulated day on the built-in simulator by default) or
``uv run supervisor.py --check`` to validate the settings and print them.
"""

from __future__ import annotations

import argparse
import sys

from config.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_BAD_SETTINGS = 2
EXIT_NOT_BUILT = 3


def print_settings(settings: Settings) -> None:
    """Print the effective settings, one per line, secrets masked."""
    rows = settings.display_rows()
    width = max(len(name) for name, _ in rows)
    for name, shown in rows:
        print(f"  {name:<{width}}  {shown}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="validate settings, print them, exit")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.check:
        print("Settings are valid. Effective values:")
        print_settings(settings)
        return EXIT_OK
    print(
        "The process supervisor is not built yet; only --check works in this version.",
        file=sys.stderr,
    )
    return EXIT_NOT_BUILT


if __name__ == "__main__":
    sys.exit(main())
