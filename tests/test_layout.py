"""The package's layout is its architecture: imports point one way (CLIs → training → speech | text → towers →
core → the ground), with no cycle, and the CALM core knows nothing of speech, text experiments or training.

Every import counts, also those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "speech_calm"

# each folder (or ground module) and the folders it may import; a module may import its own folder too
GROUND = {"schema", "files", "metrics"}
ALLOWED = {
    **{g: set() for g in GROUND},
    "core": GROUND,
    "towers": {"core", *GROUND},
    "speech": {"towers", "core", *GROUND},  # the two products stand side by side: neither imports the other
    "text": {"towers", "core", *GROUND},
    "training": {"text", "speech", "towers", "core", *GROUND},
    "cli": {"training", "text", "speech", "towers", "core", *GROUND},
}
CLIS = {"train", "infer", "evaluate", "__init__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


@lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    """speech_calm module -> the speech_calm modules it imports (anywhere in the file)."""
    mods = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("speech_calm"):
                deps.add(node.module if node.module in mods else node.module.rsplit(".", 1)[0])
                for alias in node.names:  # `from speech_calm.core import bridge` imports a module
                    if f"{node.module}.{alias.name}" in mods:
                        deps.add(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("speech_calm")}
        edges[name] = {d for d in deps if d in mods and d != name}
    return edges


def external_imports(module: str) -> set[str]:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
    return out


def folder(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2 and parts[1] in CLIS or module == "speech_calm":
        return "cli"
    return parts[1]


def room(module: str) -> str:
    """The folder a module lives in (core, towers, ...), or the module itself at the top (schema, infer, ...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def floors() -> dict[str, int]:
    """Each room's floor: 0 for a room importing no other room, else 1 + the highest room it imports."""
    edges: dict[str, set[str]] = {}
    for m, deps in graph().items():
        edges.setdefault(room(m), set()).update(room(d) for d in deps if room(d) != room(m))
    memo: dict[str, int] = {}

    def floor(r: str) -> int:
        if r not in memo:
            memo[r] = 1 + max((floor(d) for d in edges[r]), default=-1)
        return memo[r]

    return {r: floor(r) for r in edges}


def test_no_import_cycle() -> None:
    edges, state, cycles = graph(), {}, []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for d in sorted(edges[m]):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d):] + [m, d]))
            elif d not in state:
                visit(d, stack + [m])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    assert not cycles, cycles


def test_imports_point_one_way() -> None:
    wrong = [f"{m} -> {d}" for m, deps in graph().items() for d in deps
             if folder(d) != folder(m) and folder(d) not in ALLOWED[folder(m)]]
    assert not wrong, wrong


def test_core_knows_no_speech_and_no_torchaudio() -> None:
    core = [m for m in graph() if m.startswith("speech_calm.core")]
    assert len(core) >= 8
    for m in core:
        assert not {"torchaudio", "soundfile", "librosa"} & external_imports(m), m
        assert all(folder(d) in ("core", *GROUND) for d in graph()[m]), (m, graph()[m])


def test_at_most_eight_floors() -> None:
    """Floors of rooms (folders, and the modules at the top), as the README's floor plan draws them."""
    f = floors()
    assert f["core"] < f["towers"] < f["speech"] == f["text"] < f["training"] < f["infer"], f
    assert max(f.values()) + 1 <= 8, sorted(f.items(), key=lambda kv: -kv[1])[:10]


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The graph reads lazy imports too: a core module importing speech inside a function would be caught."""
    src = "def f():\n    from speech_calm.speech.model import SpeechModel\n    return SpeechModel\n"
    deps = {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)}
    assert folder("speech_calm.core.bridge") == "core" and folder(deps.pop()) == "speech"
    assert "speech" not in ALLOWED["core"]
