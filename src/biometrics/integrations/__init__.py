"""Hooks that wire biometrics into web servers, task queues and frameworks.

Each lives in a submodule that only users of its framework import (``biometrics.integrations.
uvicorn``, ...), so importing this package imports no framework.
"""

__all__: list[str] = []
