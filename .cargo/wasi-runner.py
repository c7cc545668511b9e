#!/usr/bin/env python3
"""Runs a wasm32-wasip1 program (a test binary) under wasmtime: `wasi-runner.py FILE.wasm ARGS…`.

Cargo's runner for the wasm32-wasip1 target (.cargo/config.toml); needs the `wasmtime` package
(`.ci/run` installs the pinned version). The exit status is the program's; the working
directory and the environment are the caller's.
"""
import os
import sys

import wasmtime

path, *args = sys.argv[1:]
config = wasmtime.WasiConfig()
config.argv = [path, *args]
config.env = list(os.environ.items())
config.inherit_stdin()
config.inherit_stdout()
config.inherit_stderr()
config.preopen_dir(os.getcwd(), ".")
engine = wasmtime.Engine()
store = wasmtime.Store(engine)
store.set_wasi(config)
linker = wasmtime.Linker(engine)
linker.define_wasi()
instance = linker.instantiate(store, wasmtime.Module.from_file(engine, path))
try:
    instance.exports(store)["_start"](store)
except wasmtime.ExitTrap as e:
    sys.exit(e.code)
