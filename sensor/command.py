"""The base every command-line entry point shares: errors become one line and an exit code.

``prog: error: ...`` and exit 1 (2 for a bad configuration); DEBUG=1 shows
the traceback instead. Ctrl-C exits 130; a closed pipe (``| head``) is quiet.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from sensor.errors import ConfigError, VeilleuseError


def run_command(prog: str, action: Callable[[], int]) -> int:
    try:
        return action()
    except VeilleuseError as error:
        if os.environ.get("DEBUG") == "1":
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away: silence the final flush, as a shell tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
