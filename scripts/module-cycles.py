#!/usr/bin/env python3
"""Fails when the top-level modules of a crate import each other in a circle.

A module's imports are the `crate::name` paths in its files (comments and doc comments left
out; `#[cfg(test)]` code included, since a test module that reaches back is a circle too).
The check runs over each crate named on the command line (default: every workspace library
crate) and prints each circle it finds, as `a -> b -> a`.

Written by hand because the tools that draw module graphs (cargo-modules) need a nightly
toolchain or a full rust-analyzer build; the question here is one graph search.

Usage: scripts/module-cycles.py [CRATE_DIR ...]
"""

import re
import sys
from pathlib import Path

DEFAULT_CRATES = ["authn", "platform", "testkit", "auth-service", "orders-service", "gateway"]
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse crate::\{([^;]*)\};", re.S)
COMMENT = re.compile(r"//[^\n]*")


def top_module(src: Path, file: Path) -> str:
    parts = file.relative_to(src).with_suffix("").parts
    if parts in (("lib",), ("main",)):
        return "crate"
    return parts[0]


def imports(text: str) -> set[str]:
    text = COMMENT.sub("", text)
    found = set(CRATE_PATH.findall(text))
    for group in USE_GROUP.findall(text):
        for item in group.split(","):
            name = item.strip().split("::")[0].strip()
            if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                found.add(name)
    return found


def graph(crate: Path) -> dict[str, set[str]]:
    src = crate / "src"
    edges: dict[str, set[str]] = {}
    modules = {top_module(src, f) for f in src.rglob("*.rs")}
    for file in src.rglob("*.rs"):
        module = top_module(src, file)
        targets = {m for m in imports(file.read_text()) if m in modules and m != module}
        edges.setdefault(module, set()).update(targets)
    edges.pop("crate", None)
    for targets in edges.values():
        targets.discard("crate")
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    crates = sys.argv[1:] or DEFAULT_CRATES
    failed = False
    for name in crates:
        edges = graph(root / name)
        for component in cycles(edges):
            failed = True
            members = set(component)
            detail = "; ".join(
                f"{m} -> {', '.join(sorted(edges[m] & members))}" for m in component
            )
            print(f"{name}: modules importing each other in a circle: {detail}")
    if not failed:
        print(f"no module import circles in {', '.join(crates)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
