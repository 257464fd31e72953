"""Python level: the classic RestrictedPython escapes, on ``restricted`` (RestrictedPython is
not a security boundary, but these are the holes its guards exist to close). The weakened run
is the same code under plain Python in a container, where each one reaches its target.

Every script only prints what it reached: restricted runs on the host.
"""

from __future__ import annotations

from execloop.sandboxes import ExitReason

from .attacks import ESCAPED, Attack, Category, reason_in
from .weakenings import PLAIN

__all__ = ["PYTHON_ATTACKS"]

REFUSED = reason_in(ExitReason.ERROR, absent="ESCAPED")

ESCAPES = {
    "a generator's frame globals": (
        "g = (x for x in [1])\nprint('ESCAPED', sorted(g.gi_frame.f_globals)[:3])"
    ),
    "a frame through getattr()": (
        "g = (x for x in [1])\nframe = getattr(g, 'gi_frame')\n"
        "print('ESCAPED', sorted(getattr(frame, 'f_globals'))[:3])"
    ),
    "a format string reaching __class__": "print('ESCAPED', '{{0.__class__.__mro__}}'.format(1))",
    "string.Formatter reaching __class__": (
        "import string\nprint('ESCAPED', string.Formatter().format('{{0.__class__}}', 1))"
    ),
    "object.__subclasses__() through getattr()": (
        "cls = getattr(getattr((), '__cla' + 'ss__'), '__ba' + 'se__')\n"
        "print('ESCAPED', len(getattr(cls, '__subcl' + 'asses__')()))"
    ),
    "except* reaching a traceback's frame": (
        "try:\n    raise ExceptionGroup('g', [ValueError(1)])\n"
        "except* ValueError as group:\n"
        "    print('ESCAPED', sorted(group.__traceback__.tb_frame.f_globals)[:3])"
    ),
    "a function's __globals__": "def f():\n    pass\nprint('ESCAPED', sorted(f.__globals__)[:3])",
    "sys through an allowed module": (
        "import statistics\nprint('ESCAPED', statistics.sys.modules['os'].getcwd())"
    ),
}

PYTHON_ATTACKS = [
    Attack(name, Category.PYTHON, ("restricted",), code, REFUSED, PLAIN, ESCAPED)
    for name, code in ESCAPES.items()
]
