"""The `pfnkit` command and `python -m pfnkit`: the front end of cli.py under pfnkit's name.

The command line wires priors and pfnkit together, so it lives outside pfnkit: in a
source checkout it is the top-level `cli.py`, and the wheel ships that same file as
`_pfnkit_cli.cli`. This module is the one place in pfnkit that reaches it, and only when
it runs, so `import pfnkit` never imports priors (tests/test_layering.py checks the
package, tests/test_install.py this exception).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["run"]


def _cli_main() -> Callable[..., int]:
    """`main` of the command line: the installed `_pfnkit_cli.cli`, else a checkout's cli.py."""
    try:
        from _pfnkit_cli.cli import main
    except ModuleNotFoundError as error:
        if error.name != "_pfnkit_cli":
            raise
        from cli import main  # a source checkout on sys.path that is not pip-installed
    return main


def run(argv: list[str] | None = None, *, prog: str = "pfnkit") -> int:
    """Run the command line (`pfnkit pretrain|predict|validate|robustness ...`).

    Args:
        argv: the arguments after the program name; `sys.argv[1:]` when None.
        prog: the program name that usage and error messages show.

    Returns:
        The exit status.
    """
    return _cli_main()(argv, prog=prog)


if __name__ == "__main__":
    sys.exit(run(prog="python -m pfnkit"))
