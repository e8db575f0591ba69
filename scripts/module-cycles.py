#!/usr/bin/env python3
"""Fails on an import cycle between the modules of a Rust crate.

usage: scripts/module-cycles.py [--workspace | CRATE_SRC_DIR...] | --self-test

A module is a file of the crate's src/ (lib.rs or main.rs is the crate root, a mod.rs is
its folder's module). Module A imports B when A's code names a path into B: `crate::b::x`,
`super::b`, `self::child::x`, or a path through a child A declares (`mod child;` then
`child::x`). A module and its own ancestors and descendants are one unit: a facade that
declares its children and re-exports them, or a child that uses its parent's items, is not
a cycle. A name the crate root re-exports (`pub use a::b::Name;`) resolves to a::b. Code in
`#[cfg(test)] mod ... { }` blocks is left out: tests may import freely.

Prints each cycle and exits 1 if there is one; 0 otherwise. --workspace checks every
crate of the Cargo workspace in the current directory (through `cargo metadata`).
This is the rule of the maintained tool `cargo modules dependencies --acyclic`, checked by
text in a second instead of compiling rust-analyzer in CI.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

WORD = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """Source without comments, string contents and #[cfg(test)] module bodies."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    found = {}
    for folder, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(folder, f), src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                key = ()
            elif rel[-1] == "mod":
                key = tuple(rel[:-1])
            else:
                key = tuple(rel)
            # With a lib.rs, main.rs is a binary using the library, not the crate root.
            if rel == ["main"] and () in found:
                continue
            if rel == ["lib"] or key not in found:
                found[key] = os.path.join(folder, f)
    return found


def group_paths(text):
    """`crate::a::{b::X, c::{Y, Z}}` -> (root, [a, b, X]), (root, [a, c, Y]), ..."""
    paths = []
    for m in re.finditer(r"\b(crate|super|self)((?:::" + WORD + r")*)::\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        prefix = [p for p in m.group(2).split("::") if p]
        for item in re.split(r",(?![^{]*\})", text[m.end():j - 1]):
            item = re.sub(r"\{.*", "", item.strip(), flags=re.S).strip(":").strip()
            item = item.split(" as ")[0].strip()
            if item:
                paths.append((m.group(1), prefix + item.split("::")))
    return paths


def edges_of(mods):
    root_text = strip(open(mods[()]).read()) if () in mods else ""
    reexport = {}
    for m in re.finditer(r"pub\s+use\s+(?:crate::|self::)?([\w:]+)::(\w+)\s*;", root_text):
        reexport[m.group(2)] = tuple(m.group(1).split("::"))

    def resolve(parts, seen=()):
        for n in range(len(parts), 0, -1):
            if tuple(parts[:n]) in mods:
                return tuple(parts[:n])
        if parts and parts[0] in reexport and parts[0] not in seen:
            return resolve(list(reexport[parts[0]]) + parts[1:], seen + (parts[0],))
        return ()

    edges = {k: set() for k in mods}
    for key, path in mods.items():
        text = strip(open(path).read())
        children = re.findall(r"(?:pub(?:\([\w:]+\))?\s+)?mod\s+(\w+)\s*;", text)
        paths = group_paths(text)
        for m in re.finditer(r"\b(crate|super|self)((?:::" + WORD + r")+)", text):
            paths.append((m.group(1), [p for p in m.group(2).split("::") if p]))
        for child in children:
            for m in re.finditer(r"(?<![\w:])" + child + r"((?:::" + WORD + r")+)", text):
                paths.append(("self", [child] + [p for p in m.group(1).split("::") if p]))
        for root, parts in paths:
            parts = [p for p in parts if p not in ("", "*")]
            if root == "crate":
                absolute = parts
            elif root == "super":
                absolute = list(key[:-1]) + parts
            else:
                absolute = list(key) + parts
            target = resolve(absolute)
            related = target[: len(key)] == key or key[: len(target)] == target
            if not related:
                edges[key].add(target)
    return edges


def cycles(mods):
    """Strongly connected components of more than one module (Tarjan)."""
    edges = edges_of(mods)
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in mods:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(mods):
        if v not in index:
            visit(v)
    return found


def name(key):
    return "::".join(key) or "crate"


def check(src, label):
    mods = modules(src)
    found = cycles(mods)
    for component in found:
        print(f"{label}: cycle: " + " <-> ".join(sorted(name(k) for k in component)))
    print(f"{label}: {len(found)} cycles among {len(mods)} modules")
    return not found


def workspace_crates():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    crates = []
    for package in meta["packages"]:
        dirs = sorted(
            {
                os.path.dirname(t["src_path"])
                for t in package["targets"]
                if set(t["kind"]) & {"lib", "bin"}
            }
        )
        crates.extend((package["name"], d) for d in dirs)
    return crates


def self_test():
    """The checker on small crates: a cycle is found, a facade and its children are not."""
    cases = {
        "a cycle through use": (
            {"lib.rs": "pub mod a;\npub mod b;\n", "a.rs": "use crate::b::B;\n",
             "b.rs": "use crate::a::A;\n"},
            1,
        ),
        "a cycle through a grouped use and super": (
            {"lib.rs": "mod a;\nmod b;\nmod c;\n", "a.rs": "use crate::{b::X, c};\n",
             "b.rs": "fn f() { super::c::g() }\n", "c.rs": "use super::a::Y;\n"},
            1,
        ),
        "a facade and its children": (
            {"lib.rs": "pub mod report;\npub use report::Report;\n",
             "report/mod.rs": "pub mod build;\npub struct Report;\nuse build::x;\n",
             "report/build.rs": "use super::Report;\n"},
            0,
        ),
        "one-way imports and a test block": (
            {"lib.rs": "mod a;\nmod b;\n", "a.rs": "use crate::b::B; // crate::a\n",
             "b.rs": "pub struct B;\n#[cfg(test)]\nmod tests { use crate::a::A; }\n"},
            0,
        ),
        "a path through a re-export of the root": (
            {"lib.rs": "mod a;\nmod b;\npub use a::A;\n", "a.rs": "use crate::b::B;\n",
             "b.rs": "use crate::A;\n"},
            1,
        ),
    }
    ok = True
    for case, (files, expected) in cases.items():
        with tempfile.TemporaryDirectory() as src:
            for path, text in files.items():
                full = os.path.join(src, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w") as f:
                    f.write(text)
            got = len(cycles(modules(src)))
        verdict = "ok" if got == expected else "WRONG"
        ok &= got == expected
        print(f"self-test: {case}: {got} cycle(s), expected {expected}: {verdict}")
    return ok


def main(args):
    if args == ["--self-test"]:
        return 0 if self_test() else 1
    if args == ["--workspace"]:
        crates = workspace_crates()
    elif args and not any(a.startswith("-") for a in args):
        crates = [(a, a) for a in args]
    else:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    results = [check(src, label) for label, src in crates]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
