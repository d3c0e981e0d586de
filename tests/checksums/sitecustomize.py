"""Test-only, for `dvc repro` in a subprocess: torchvision accepts the checksums of tests/fakes.py's archives.

The fakes are data sets in the real on-disk formats, but their md5s cannot be the real ones; in-process tests
patch torchvision's checksum attributes with monkeypatch. A subprocess with this folder on PYTHONPATH imports
this file at start-up, and with CLIPPROBE_FAKE_CHECKSUMS = {"module:Class": {"attribute": value}} patches
each class right after its module is first imported. Nothing else changes.
"""

import importlib.abc
import importlib.util
import json
import os
import sys

_PATCHES: dict[str, dict] = json.loads(os.environ.get("CLIPPROBE_FAKE_CHECKSUMS", "{}"))


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        classes = {key.split(":")[1]: attrs for key, attrs in _PATCHES.items() if key.split(":")[0] == name}
        if not classes:
            return None
        sys.meta_path.remove(self)  # let the real finders locate the module
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            for cls, attrs in classes.items():
                for attr, value in attrs.items():
                    setattr(getattr(module, cls), attr, value)

        spec.loader.exec_module = exec_module
        return spec


if _PATCHES:
    sys.meta_path.insert(0, _PatchAfterImport())
