"""``python -m shapecli``: the same as the ``shapecli`` command.

``python -m`` puts the current directory first on ``sys.path``; it is removed, so a
file in the directory being linted can never shadow a module shapecli imports.
"""

import sys
from pathlib import Path

if sys.path and sys.path[0] in ("", str(Path.cwd())):
    del sys.path[0]

from shapecli.cli import main

main()
