"""Fuzz targets: one module per target, each defining ``one(data: bytes) -> None``.

Discovered with :func:`pkgutil.iter_modules` by ``tests.fuzz.run``; a module
whose name starts with ``_`` is a helper, not a target.  See ``tests/fuzz/__init__.py``.
"""
