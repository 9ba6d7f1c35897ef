"""Two measured costs of a short-lived torch process, and how the CLI avoids them.

1. **torch._dynamo on the first meta op.** Many meta kernels are Python references
   wrapped by ``torch._disable_dynamo``, whose wrapper imports ``torch._dynamo``
   (~1.5 s, 70 MiB) on its first call, only to mark the function "not traceable"
   and cache that in ``fn.__dynamo_disable``. :func:`skip_dynamo_import` fills that
   cache up front with the function itself, so meta kernels run without the import.
   The one thing lost is that dynamo would trace into those reference kernels if this
   process later compiled a model — the CLI never does, so only the CLI calls this.
   If a torch release changes the wrapper, nothing is patched and nothing breaks: the
   dry run is only slower.

2. **Interpreter teardown after torch** takes 0.4-0.9 s of freeing objects nobody
   will look at again. :func:`exit_now` flushes the streams and leaves.

``benchmarks/startup.py`` measures both, as ratios to ``python -c "import torch"``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import types
from typing import NoReturn


@functools.cache
def skip_dynamo_import() -> int:
    """Pre-fill the lazy dynamo-disable cache of loaded functions; return how many.

    Done once per process (it walks every object on the heap); later calls are free.
    """
    if "torch._dynamo" in sys.modules:
        return 0
    import torch

    wrapper = getattr(torch, "_disable_dynamo", None)
    if wrapper is None:
        return 0
    code = wrapper(lambda: None).__code__
    if "fn" not in code.co_freevars:
        return 0
    slot = code.co_freevars.index("fn")
    patched = 0
    for obj in gc.get_objects():
        if type(obj) is types.FunctionType and obj.__code__ is code and obj.__closure__:
            fn = obj.__closure__[slot].cell_contents
            if callable(fn) and getattr(fn, "__dynamo_disable", None) is None:
                try:
                    fn.__dynamo_disable = fn
                except (AttributeError, TypeError):
                    continue
                patched += 1
    return patched


def exit_now(code: int) -> NoReturn:
    """Flush stdout and stderr, then end the process without interpreter teardown.

    A closed pipe (``| head``) is not an error: whatever could not be written is
    dropped quietly and the exit code stays the command's own.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            stream.flush()
    os._exit(code)
