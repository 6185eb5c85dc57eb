"""Compile: policies, namespaces, pods and topology in; an Intent out. Pure, no I/O."""

from __future__ import annotations

from nsgsync.compile.compiler import CompileOptions, compile_intent

__all__ = ["CompileOptions", "compile_intent"]
