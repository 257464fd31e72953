"""execloop.skills: the built-in skills, one ``<name>/SKILL.md`` folder each (package data).

Load them with ``execloop.runtime.skills`` (``list_skills``, ``find_skill``); the format is
described in ``skills/README.md``.
"""

__all__: list[str] = []
