#!/usr/bin/env python3
"""Top-level module graph of a Rust crate, read from `crate::` paths.

usage: modgraph.py SRC_DIR [--items] [--no-tests] [--root] [--check [--allow=a,b,...]]

Each top-level module is `SRC/x.rs` or `SRC/x/` (lib.rs / main.rs are the crate root,
shown as `(root)` only with --root). An edge A -> B exists when a file of A names
`crate::B...`, in `use crate::...` lines (grouped `use crate::{a::x, b}` forms and
multi-line uses included) or inline in code. `crate::Name` where Name is not a module
is resolved through the root's `pub use module::{Name}` re-exports, else to `(root)`.
Comments (incl. doc comments) are ignored; references inside `#[cfg(test)]` items are
tagged [test]. Prints modules, edges, SCCs, and (with --items) every reference on an
edge inside an SCC with file:line.

With --check it exits 1 when there is a circle of modules, other than one made of exactly
the modules named by --allow (a circle kept on purpose, and said so in the crate's map).
.ci/run checks the server crate (no circle) and the index crate (its error circle).
"""
import os
import re
import sys
from collections import defaultdict

ROOT = "(root)"


def strip_comments_and_strings(text):
    """Blank out comments and string/char literals, keeping newlines and offsets."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            # char literal ('a', '\n', '\u{..}') vs lifetime ('a)
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append(" " * m.end())
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(code, open_at):
    """Offset of the `}` closing the `{` at `open_at` (the end of `code` if none does)."""
    depth, k = 0, open_at
    while k < len(code):
        if code[k] == "{":
            depth += 1
        elif code[k] == "}":
            depth -= 1
            if depth == 0:
                return k
        k += 1
    return k


def test_ranges(code):
    """Offsets [start, end) of items annotated #[cfg(test)]."""
    ranges = []
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        j = m.end()
        # the item ends at the matching brace of its first '{', or at ';' if before it
        brace = code.find("{", j)
        semi = code.find(";", j)
        if semi != -1 and (brace == -1 or semi < brace):
            ranges.append((m.start(), semi + 1))
            continue
        ranges.append((m.start(), matching_brace(code, brace) + 1))
    return ranges


def split_top(s):
    """Split a use-tree group body on top-level commas."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def expand_tree(body):
    """Leaves of a use-tree group body: `a::{X, Y}, b` -> ["a::X", "a::Y", "b"]."""
    out = []
    for part in split_top(body):
        part = re.sub(r"\s+as\s+\w+$", "", part.strip())
        if part.endswith("}") and "::{" in part:
            head, _, inner = part.partition("::{")
            out += [head + "::" + leaf for leaf in expand_tree(inner[:-1])]
        else:
            out.append(part)
    return out


def module_of(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    if first in ("lib.rs", "main.rs"):
        return ROOT
    return first[:-3] if first.endswith(".rs") else first


def root_reexports(src, modules):
    """Name -> module for `pub use module::{A, B}` / `pub use module::A` in lib.rs."""
    res = {}
    lib = os.path.join(src, "lib.rs")
    if not os.path.exists(lib):
        return res
    code = strip_comments_and_strings(open(lib, encoding="utf-8").read())
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+(?:crate::)?([^;]+);", code, re.S):
        tree = re.sub(r"\s+", "", m.group(1))
        head, _, rest = tree.partition("::")
        if head not in modules:
            continue
        for leaf in re.findall(r"(\w+)(?:\s*as\s*(\w+))?(?=[,}]|$)", rest):
            res[leaf[1] or leaf[0]] = head
    return res


def scan(src):
    files = []
    for d, _, fs in os.walk(src):
        files += [os.path.join(d, f) for f in fs if f.endswith(".rs")]
    modules = sorted({module_of(src, f) for f in files} - {ROOT})
    modset = set(modules)
    reexp = root_reexports(src, modset)

    def resolve(name):
        if name in modset:
            return name
        return reexp.get(name, ROOT)

    refs = []  # (from_mod, to_mod, relfile, line, text, is_test)
    for f in sorted(files):
        raw = open(f, encoding="utf-8").read()
        code = strip_comments_and_strings(raw)
        lines = raw.split("\n")
        tests = test_ranges(code)
        here = module_of(src, f)
        rel = os.path.relpath(f, src)

        def line_of(off):
            return code.count("\n", 0, off) + 1

        def is_test(off):
            return any(a <= off < b for a, b in tests)

        # every `crate::` path; a trailing `::{...}` group is expanded into its leaves
        for m in re.finditer(r"(?<![\w$])crate::((?:\w+::)*)(\{|\w+)", code):
            prefix = m.group(1)
            if m.group(2) != "{":
                paths = [(prefix + m.group(2), m.start())]
            else:
                j = matching_brace(code, m.end() - 1)
                paths = []
                pos = m.end()
                for leaf in expand_tree(code[m.end():j]):
                    first = leaf.split("::")[0]
                    off = code.find(first, pos, j)
                    if off >= 0:
                        pos = off
                    paths.append((prefix + leaf, pos))
            for path, off in paths:
                path = re.sub(r"\s+", "", path)
                segs = [p for p in path.split("::") if p != "self"]
                head = segs[0]
                if head == "self" or not head:
                    continue
                text = "crate::" + "::".join(segs)
                # a bare module import (`use crate::api;`): list what the file takes through it
                if len(segs) == 1 and head in modset and re.match(r"\s*(use\b|pub\s)", code[code.rfind("\n", 0, off) + 1:]) is not None:
                    used = sorted(set(re.findall(r"(?<![\w:])" + head + r"((?:::\w+)+)", code)))
                    if used:
                        text += "  (then " + ", ".join(head + u for u in used) + ")"
                refs.append((here, resolve(head), rel, line_of(off), text, is_test(off)))
    return modules, refs


def tarjan(nodes, edges):
    index, low, onstack, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        onstack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in onstack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                onstack.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            strong(v)
    return sccs


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a.split("=")[0] for a in sys.argv[1:] if a.startswith("--")}
    allowed = [
        sorted(a.split("=", 1)[1].split(","))
        for a in sys.argv[1:]
        if a.startswith("--allow=")
    ]
    src = args[0]
    modules, refs = scan(src)
    if "--no-tests" in flags:
        refs = [r for r in refs if not r[5]]
    if "--root" not in flags:
        refs = [r for r in refs if ROOT not in (r[0], r[1])]
        nodes = modules
    else:
        nodes = [ROOT] + modules
    edges = defaultdict(set)
    test_only = defaultdict(lambda: True)
    for a, b, *_rest in refs:
        if a != b:
            edges[a].add(b)
    for a, b, _f, _l, _t, t in refs:
        if a != b:
            test_only[(a, b)] = test_only[(a, b)] and t
    print(f"# {src}: {len(nodes)} top-level modules")
    for a in nodes:
        outs = sorted(edges.get(a, ()))
        shown = [b + ("[test]" if test_only[(a, b)] else "") for b in outs]
        print(f"{a:16} -> {', '.join(shown) if shown else '-'}")
    sccs = [c for c in tarjan(nodes, edges) if len(c) > 1]
    print(f"\n# strongly connected components (size > 1): {len(sccs)}")
    for c in sccs:
        print(f"{len(c)}: {', '.join(c)}")
    if "--check" in flags:
        unexpected = [c for c in sccs if c not in allowed]
        for c in unexpected:
            print(f"a circle of modules: {', '.join(c)}", file=sys.stderr)
        if unexpected:
            sys.exit(1)
    if "--items" in flags:
        comp_of = {m: i for i, c in enumerate(sccs) for m in c}
        print("\n# references on edges inside an SCC")
        by_edge = defaultdict(list)
        for a, b, f, ln, text, t in refs:
            if a != b and a in comp_of and comp_of.get(b) == comp_of[a]:
                by_edge[(a, b)].append((f, ln, text, t))
        for (a, b) in sorted(by_edge):
            print(f"\n{a} -> {b}")
            for f, ln, text, t in by_edge[(a, b)]:
                print(f"    {f}:{ln}  {text}{'  [test]' if t else ''}")


if __name__ == "__main__":
    main()
