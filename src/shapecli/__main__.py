"""``python -m shapecli``: the same as the ``shapecli`` command.

The working folder that ``python -m`` puts first on ``sys.path`` is already gone: the
package's ``__init__`` takes it off before importing anything (see there).
"""

from shapecli.cli import main

main()
