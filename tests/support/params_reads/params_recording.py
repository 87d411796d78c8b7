"""A params mapping that records every key read, and the hook that gives it to a stage.

`Recording(params)` behaves as the dict load_params returns; reading a leaf records its dotted key
(`train.lr`), and reading a whole section at once (iterating it, `**` it, copying it) records the
section (`train.args`). A key asked for and absent counts as read too. tests/test_pipeline.py
compares what each stage read with what its dvc.yaml entry declares.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import os
import sys

TARGET = "medqa_scale.core.params"


class Recording(dict):
    def __init__(self, data=(), path: str = "", reads: set | None = None):
        super().__init__(data)
        self._path, self._reads, self._children = path, reads if reads is not None else set(), {}

    def _key(self, key) -> str:
        return f"{self._path}.{key}" if self._path else str(key)

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, dict):
            if key not in self._children or self._children[key][0] is not value:
                self._children[key] = (value, Recording(value, self._key(key), self._reads))
            return self._children[key][1]
        self._reads.add(self._key(key))
        return value

    def get(self, key, default=None):
        if key in self:
            return self[key]
        self._reads.add(self._key(key))
        return default

    def __contains__(self, key):
        if not super().__contains__(key):
            self._reads.add(self._key(key))
        return super().__contains__(key)

    def _whole(self):
        self._reads.add(self._path or "<all params>")

    def keys(self):
        self._whole()
        return super().keys()

    def items(self):
        self._whole()
        return super().items()

    def values(self):
        self._whole()
        return super().values()

    def __iter__(self):
        self._whole()
        return super().__iter__()

    def copy(self):
        self._whole()
        return dict(super().items())

    def __reduce_ex__(self, protocol):  # deepcopy and pickle read the whole mapping
        self._whole()
        return dict, (dict(super().items()),)


def install(folder: str) -> None:
    """Give every later import of medqa_scale.core.params a recording load_params; write the reads at exit."""
    reads: set[str] = set()
    called: list[bool] = []  # a stage that loads params and reads none is recorded too

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != TARGET:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                plain = module.load_params

                def load_params(*args, **kwargs):
                    called.append(True)
                    return Recording(plain(*args, **kwargs), "", reads)

                module.load_params = load_params

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Finder())

    def write():
        if called:
            with open(os.path.join(folder, f"{os.getpid()}.json"), "w", encoding="utf-8") as f:
                json.dump({"argv": sys.argv, "reads": sorted(reads)}, f)

    atexit.register(write)
