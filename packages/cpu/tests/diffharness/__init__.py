"""Differential-testing harness for pyv86's CPU (test support, not part of the package).

Oracles nobody here wrote run the same instruction bytes from the same initial state as
pyv86's CPU, and the final registers, flags and memory are compared with the flags each
instruction leaves undefined masked out:

- ``oracle_unicorn``: Unicorn (QEMU's TCG) in 32-bit flat protected mode and 16-bit real mode;
- ``oracle_host``: this machine's own CPU, running the snippet as a 32-bit Linux process
  (``gcc -m32`` builds a small driver once per session).

``grammar`` generates seeded, deterministic snippets from a curated grammar of non-faulting
instructions (it knows which flags each emitted instruction leaves undefined), ``layout``
fixes where code, data and stack live, ``run_pyv86`` runs a snippet on pyv86 and ``compare``
diffs two final states and formats a minimal reproducer.  ``fuzz.py`` is the standalone
entry point for long runs.
"""
