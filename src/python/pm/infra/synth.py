"""Write the CloudFormation template: `./pants run src/python/pm/infra:synth [-- --output PATH]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pm.infra.stack import template_json

DEFAULT_OUTPUT = Path("dist/infra/pm-stack.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.infra.synth", description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    args = parser.parse_args(argv)
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(template_json() + "\n")
    sys.stderr.write(f"synth: wrote {output}\n")
    print(output.resolve())


if __name__ == "__main__":
    main()
