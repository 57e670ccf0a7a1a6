#!/usr/bin/env python3
"""Find import circles between the .rs files of each Rust crate in the workspace.

Text analysis only: nothing is built and cargo is not run.

- A crate is one target: the library (Cargo.toml [lib] path, default src/lib.rs) or
  a binary ([[bin]] paths, default src/main.rs, and src/bin/*.rs). Its files are the
  root plus every file reached through `mod x;`, so a binary's modules are apart
  from the library's (the binary names the library as an external crate: ignored).
- Module path: the root is the crate; a.rs or a/mod.rs is `a`; a/b.rs is `a::b`.
  Inline `mod x { }` blocks are modules inside their file; `#[cfg(test)] mod x { }`
  blocks and `#[cfg(test)] mod x;` files are skipped. Comments (doc comments too),
  string and char literals are blanked before anything is read.
- Edge A -> B: code in A names a path resolving into file B: `crate::x::Y`,
  `super::x::Y`, `self::x`, `child::Y`, in `use` trees (braces expanded) or anywhere
  in code (`crate::t::T::new()`, `$crate::` in macros). `super`/`self` follow the
  module of the code (for a/mod.rs `super` is a's parent; for a/b.rs it is `a`).
  The target is the longest prefix of segments that is a module; when that is the
  base itself (`crate::item`, `super::Item`) the edge goes to the base's file.
- Not edges: `pub use` / `pub(...) use` lines in module roots (lib.rs, main.rs,
  mod.rs, a.rs with a/ children), `mod x;` declarations, self-edges. A reference
  that reaches a module root through a name it re-exports is marked
  "(re-export of ...)": importing from the defining module removes that edge.
- Cycles: strongly connected components (Tarjan) of more than one file, each with
  one example reference (file:line, path) per edge inside it. Exit 1 if any.
"""
import argparse
import bisect
import re
import sys
import tomllib
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parent.parent
CHAR = r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'"
LEXEME = re.compile(r'//[^\n]*|/\*|(?<!\w)b?r(#*)"[\s\S]*?"\1|"(?:\\[\s\S]|[^"\\])*"|' + CHAR)
COMMENT_DELIM = re.compile(r'/\*|\*/')
ATTRS = r'(?:#\s*\[[^\]]*\]\s*)*(?:pub\s*(?:\([^)]*\))?\s*)?'
TEST_MOD = re.compile(r'#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]\s*' + ATTRS + r'mod\s+\w+\s*([{;])')
MOD_DECL = re.compile(r'(?<![\w$])mod\s+(\w+)\s*;')
INLINE_MOD = re.compile(r'(?<![\w$])mod\s+(\w+)\s*\{')
USE = re.compile(r'(?<![\w:$])(pub\s*(?:\([^)]*\))?\s*)?use\s+([^;]*);')
PATH = re.compile(r'(?<![\w:$])(\$?crate|super|self|[a-z_]\w*)((?:\s*::\s*(?:[A-Za-z_]\w*|\*))+)')
TOKEN = re.compile(r'::|[{},*]|[A-Za-z_$]\w*')


def blank(s):
    return re.sub(r'[^\n]', ' ', s)


def clean(src):
    """Blank comments, strings and char literals; keep newlines (line numbers)."""
    out, i = [], 0
    while m := LEXEME.search(src, i):
        end = m.end()
        if m.group() == '/*':  # block comments nest
            depth = 1
            while depth and (t := COMMENT_DELIM.search(src, end)):
                depth, end = depth + (1 if t.group() == '/*' else -1), t.end()
            end = end if depth == 0 else len(src)
        out += [src[i:m.start()], blank(src[m.start():end])]
        i = end
    return ''.join(out) + src[i:]


def block_end(text, open_brace):
    """Index just past the brace that closes the one at open_brace."""
    depth = 0
    for k in range(open_brace, len(text)):
        depth += {'{': 1, '}': -1}.get(text[k], 0)
        if depth == 0:
            return k + 1
    return len(text)


def drop_test_mods(text):
    while m := TEST_MOD.search(text):
        end = m.end() if m.group(1) == ';' else block_end(text, m.end() - 1)
        text = text[:m.start()] + blank(text[m.start():end]) + text[end:]
    return text


def use_paths(toks, i, prefix, out):
    """Expand one use-tree group from toks[i] (up to its `}`); append (segments, alias, offset)."""
    path, alias = list(prefix), None
    while i < len(toks):
        (t, off), i = toks[i], i + 1
        if t == '{':
            i, path = use_paths(toks, i, path, out), None
        elif t in (',', '}'):
            if path and len(path) > len(prefix):
                out.append((path, alias, last))
            if t == '}':
                return i
            path, alias = list(prefix), None
        elif t == 'as' and i < len(toks):
            alias, i = toks[i][0], i + 1
        elif t != '::' and path is not None:
            path, last = path + [t], off
    return i


class Crate:
    def __init__(self, root):
        self.root = root
        self.modules = {}   # module path (tuple) -> file
        self.texts = {}     # file -> cleaned text
        self.inline = {}    # file -> [(start, end, module path)] of inline mod blocks
        self.files = {}     # file -> module path
        self.roots = set()  # module-root files (their `pub use` lines are not edges)
        self.load(root, ())

    def load(self, path, modpath):
        text = drop_test_mods(clean(path.read_text(encoding='utf-8')))
        self.modules[modpath], self.files[path], self.texts[path] = path, modpath, text
        spans = []
        for m in INLINE_MOD.finditer(text):
            outer = self.module_at(spans, modpath, m.start())
            spans.append((m.end() - 1, block_end(text, m.end() - 1), outer + (m.group(1),)))
            self.modules[spans[-1][2]] = path
        self.inline[path] = spans
        own_dir = path == self.root or path.name == 'mod.rs'
        base = path.parent if own_dir else path.parent / path.stem
        for m in MOD_DECL.finditer(text):
            here = self.module_at(spans, modpath, m.start())
            d = base.joinpath(*here[len(modpath):])
            for child in (d / f'{m.group(1)}.rs', d / m.group(1) / 'mod.rs'):
                if child.is_file() and child not in self.texts:
                    self.roots.add(path)
                    self.load(child, here + (m.group(1),))
                    break

    @staticmethod
    def module_at(spans, modpath, offset):
        inside = [s for s in spans if s[0] <= offset < s[1]]
        return max(inside, key=lambda s: s[0])[2] if inside else modpath

    def resolve(self, segs, here):
        """(target module path, remaining segments) for a path, or None."""
        head, rest = segs[0], list(segs)
        if head in ('crate', '$crate'):
            base, rest = (), rest[1:]
        elif head in ('super', 'self'):
            base = here
            while rest and rest[0] in ('super', 'self'):
                base, rest = (base[:-1] if rest[0] == 'super' else base), rest[1:]
        elif here + (head,) in self.modules:
            base = here
        else:
            return None
        if rest and rest[-1] == 'self':
            rest = rest[:-1]
        k = max(k for k in range(len(rest) + 1) if base + tuple(rest[:k]) in self.modules)
        if k == 0 and not rest:
            return None
        return base + tuple(rest[:k]), rest[k:]

    def references(self, path):
        """Yield (offset, segments) for every path in code; collect re-exports."""
        text = self.texts[path]
        is_root = path in self.roots or path == self.root or path.name == 'mod.rs'
        for m in USE.finditer(text):
            found = []
            toks = [(t.group(), t.start()) for t in TOKEN.finditer(m.group(2))]
            use_paths(toks + [('}', len(m.group(2)))], 0, [], found)
            for segs, alias, off in found:
                if m.group(1) and is_root:
                    if segs[-1] != '*':
                        self.reexports.setdefault(path, {})[alias or segs[-1]] = '::'.join(segs)
                else:
                    yield m.start(2) + off, segs
        text = USE.sub(lambda m: blank(m.group()), text)
        for m in PATH.finditer(text):
            yield m.start(), [m.group(1)] + re.findall(r'[A-Za-z_]\w*|\*', m.group(2))

    def edges(self):
        """{(a, b): [(line, path text, note)]}, direct references first."""
        self.reexports, found = {}, {}
        refs = {path: list(self.references(path)) for path in self.files}
        for path, modpath in self.files.items():
            lines = [0] + [k + 1 for k, ch in enumerate(self.texts[path]) if ch == '\n']
            for off, segs in refs[path]:
                hit = self.resolve(segs, self.module_at(self.inline[path], modpath, off))
                if not hit or self.modules[hit[0]] == path:
                    continue
                target, rest = self.modules[hit[0]], hit[1]
                via = self.reexports.get(target, {}).get(rest[0]) if rest else None
                found.setdefault((path, target), []).append((bisect.bisect_right(lines, off),
                    '::'.join(segs), f' (re-export of {via})' if via else ''))
        for r in found.values():
            r.sort(key=lambda ref: (bool(ref[2]), ref[0]))
        return found


def tarjan(nodes, graph):
    """Strongly connected components of more than one node."""
    index, low, stack, sccs = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
            if w in stack:
                low[v] = min(low[v], low[w])
        if low[v] == index[v]:
            k = stack.index(v)
            sccs.append(sorted(stack[k:]))
            del stack[k:]

    for v in nodes:
        if v not in index:
            visit(v)
    return [s for s in sccs if len(s) > 1]


def targets(crate_dir):
    toml = crate_dir / 'Cargo.toml'
    meta = tomllib.loads(toml.read_text(encoding='utf-8')) if toml.is_file() else {}
    pkg = meta.get('package', {}).get('name', crate_dir.name)
    found = [('lib', crate_dir / meta.get('lib', {}).get('path', 'src/lib.rs'))]
    bins = meta.get('bin') or ([{'name': pkg}] if (crate_dir / 'src/main.rs').is_file() else [])
    named = {b.get('name') for b in bins}
    bins += [{'name': p.stem, 'path': f'src/bin/{p.name}'}
             for p in sorted(crate_dir.glob('src/bin/*.rs')) if p.stem not in named]
    for b in bins:
        default = 'src/main.rs' if b.get('name') == pkg else f"src/bin/{b.get('name')}.rs"
        found.append((f"bin {b.get('name')}", crate_dir / b.get('path', default)))
    return [(f'{pkg} ({kind})', root) for kind, root in found if root.is_file()]


def rel(f):
    return f.relative_to(WORKSPACE).as_posix() if f.is_relative_to(WORKSPACE) else str(f)


def describe(a, b, refs):
    line, text, note = refs[0]
    more = f'  (+{len(refs) - 1} more)' if len(refs) > 1 else ''
    return f'{rel(a)} -> {rel(b)}: {rel(a)}:{line} {text}{note}{more}'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--crate', metavar='DIR', help='check one crate directory only')
    ap.add_argument('--verbose', action='store_true', help='print every edge')
    args = ap.parse_args()
    if args.crate:
        d = Path(args.crate)
        dirs = [d if d.is_dir() else WORKSPACE / d]
        if not (dirs[0] / 'Cargo.toml').is_file():
            ap.error(f'{args.crate}: no Cargo.toml there')
    else:
        dirs = sorted(p.parent for p in WORKSPACE.glob('crates/*/Cargo.toml'))
        dirs += [WORKSPACE / 'tests'] if (WORKSPACE / 'tests/Cargo.toml').is_file() else []
    n_crates = n_files = n_cycles = 0
    for d in dirs:
        for name, root in targets(d.resolve()):
            crate = Crate(root)
            edges = crate.edges()
            graph = {}
            for a, b in sorted(edges):
                graph.setdefault(a, []).append(b)
            cycles = tarjan(sorted(crate.files), graph)
            n_crates, n_files = n_crates + 1, n_files + len(crate.files)
            n_cycles += len(cycles)
            print(f'{name}: {len(crate.files)} files, {len(edges)} edges, {len(cycles)} cycle(s)')
            for a, b in sorted(edges) if args.verbose else ():
                print('  edge ' + describe(a, b, edges[a, b]))
            for k, scc in enumerate(cycles, 1):
                print(f'  cycle {k}: ' + ', '.join(rel(f) for f in scc))
                for a, b in sorted(e for e in edges if e[0] in scc and e[1] in scc):
                    print('    ' + describe(a, b, edges[a, b]))
    print(f'{n_crates} crates, {n_files} files, {n_cycles} cycles')
    return 1 if n_cycles else 0


if __name__ == '__main__':
    sys.exit(main())
