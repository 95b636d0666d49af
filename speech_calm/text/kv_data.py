"""The key-value arithmetic data of the CALM paper (§4.1, Table 1), scaled to a CPU.

Written by the recipe's kv_data stage, or by ``python data_prep/kv_arithmetic.py --out DIR`` (its flags are
the fields of `KVSettings`).

N string keys (``--key-length`` characters of ``--alphabet``) are mapped to unique integers in [1, N].
Three datasets of expressions over +/- (the paper also uses ×, whose results no CPU-sized model learns
in minutes):

* KV-Substitution (m_A's training data): ``dgx+bqe-pa`` → ``710+241-300`` (keys replaced by their values:
  here 17, 142 and 3, written as below). Expressions of one key (``dgx`` → ``710``) are included: they are
  the key-value mapping itself.
* Numeric-Arithmetic (m_B's training data): ``710+241-300`` → ``651`` (17 + 142 - 3 = 156). A share of the
  rows (``--arithmetic-prefix``, default half) stand behind a prefix of random letters, ``xq+ab-kfw=710+241-300``
  → ``651``: the layout of KV-Arithmetic when its target writes the values out (``speech_calm.text.kv``), so that m_B's
  arithmetic does not depend on where the numbers start. The letters are not keys and say nothing of the result.
* KV-Arithmetic (the composition's data): ``dgx+bqe-pa`` → ``651``; composition trains on expressions over
  ``--compose-fraction`` of the keys only (the paper: 20%); the test set uses only the other keys, so the
  composed model must read values it never saw during composition from m_A. The composition keys are drawn so
  that their values use every digit at every place where they can (``--cover-digits``): at the paper's scale
  (5000 composition keys) any draw does; 20 random keys of 100 miss a few.

Three choices make arithmetic learnable by a model trained from scratch in minutes (each can be turned
off): numbers are zero-padded to one width and written least-significant digit first (``--fixed-width``,
``--little-endian``: 17 + 142 - 3 = 156 reads ``710+241-300`` → ``651``; every digit then sits at a fixed
place and a carry flows in reading order, as in Lee et al. 2023), and only expressions with a non-negative
result are drawn (``--non-negative``: no sign to decide before the first digit). Keys are
prefix-free (no key begins another), so a key is complete at its last character and m_A can have its value
in mind there, where the anchor's later positions can read it.

Outputs (JSONL, one ``{"id", "src", "tgt"}`` per line, KV-Arithmetic rows also ``"values"``, the expression
with its keys' values; test expressions never occur in a train file)::

    OUT/keys.jsonl                              {"key", "value", "compose"}
    OUT/substitution/{train,test}.jsonl         KV-Substitution over all keys
    OUT/arithmetic/{train,test}.jsonl           Numeric-Arithmetic over values in [1, N]
    OUT/kv_arithmetic/{train,dev,test}.jsonl    train/dev: composition keys; test: held-out keys only
    OUT/stats.json                              the settings and counts (a rerun with the same settings
                                                leaves the directory as it is)

Everything is a pure function of the settings (including ``--seed``); files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from speech_calm.files import atomic_write

__all__ = ["KVSettings", "make_keys", "choose_compose_keys", "expression", "evaluate", "number", "substitute",
           "value", "prepare", "DATASETS"]

DATASETS = ("substitution", "arithmetic", "kv_arithmetic")
FORMAT_VERSION = 4
COVER_DRAWS = 1000


@dataclass(frozen=True)
class KVSettings:
    """What the data is made of (the defaults are the recipe's)."""

    num_keys: int = 200  # N: keys, mapped to a permutation of 1..N
    key_length: tuple[int, int] = (2, 3)  # shortest and longest key, in characters
    alphabet: str = "abcdefghijklmnopqrstuvwxyz"  # characters keys are made of
    operands: tuple[int, int] = (2, 3)  # operands per arithmetic expression (the paper: 3-6)
    substitution_operands: tuple[int, int] = (1, 3)  # operands per KV-Substitution expression
    operators: str = "+-"  # binary operators (* binds tighter than + and -)
    non_negative: bool = True  # only expressions whose result is >= 0
    little_endian: bool = True  # numbers written least-significant digit first (17 as "71")
    fixed_width: bool = True  # numbers zero-padded to one width (that of the largest possible result)
    compose_fraction: float = 0.2  # share of keys whose expressions composition trains on
    # the composition keys: of COVER_DRAWS random draws, the one whose values use the most digits at each place
    # (at the paper's scale, 5000 keys always use them all; 20 random keys of 100 miss a few, and a digit never
    # copied at a place during composition is then often copied wrong at test time)
    cover_digits: bool = True  # composition keys whose values use every digit at every place, where they can
    substitution_train: int = 60000  # rows of m_A's training data
    arithmetic_train: int = 60000  # rows of m_B's training data
    kv_arithmetic_train: int = 20000  # rows of the composition's training data
    arithmetic_prefix: float = 0.5  # share of Numeric-Arithmetic rows behind a prefix of letters ('xq+ab=')
    test_rows: int = 500  # rows of each test set (the composition's dev set has a fifth as many)
    seed: int = 0  # everything is a function of the settings and this seed

    def check(self) -> None:
        lo, hi = self.key_length
        if not 1 <= lo <= hi:
            raise ValueError(f"key_length must be 1 <= shortest <= longest, got {self.key_length}")
        if len(set(self.alphabet)) != len(self.alphabet) or not self.alphabet.isalpha():
            raise ValueError(f"alphabet must be distinct letters, got {self.alphabet!r}")
        possible = sum(len(self.alphabet) ** n for n in range(lo, hi + 1))
        if self.num_keys > possible // 2:
            raise ValueError(f"{self.num_keys} keys are too many for {possible} possible strings; use longer keys")
        for name in ("operands", "substitution_operands"):
            a, b = getattr(self, name)
            if not 1 <= a <= b:
                raise ValueError(f"{name} must be 1 <= fewest <= most, got {(a, b)}")
        if not self.operators or set(self.operators) - set("+-*"):
            raise ValueError(f"operators must be some of '+-*', got {self.operators!r}")
        if not 0 <= self.arithmetic_prefix <= 1:
            raise ValueError(f"arithmetic_prefix must be in [0, 1], got {self.arithmetic_prefix}")
        if not 0 < self.compose_fraction < 1:
            raise ValueError(f"compose_fraction must be in (0, 1), got {self.compose_fraction}")
        if round(self.num_keys * self.compose_fraction) < 2:
            raise ValueError("compose_fraction leaves fewer than 2 composition keys; use more keys")

    def digest(self) -> str:
        return hashlib.sha1(json.dumps({**asdict(self), "v": FORMAT_VERSION}, sort_keys=True).encode()).hexdigest()[:12]


def random_word(rng: random.Random, settings: KVSettings) -> str:
    """A random string of the keys' alphabet and lengths (a key candidate, or a prefix's stand-in word)."""
    return "".join(rng.choice(settings.alphabet) for _ in range(rng.randint(*settings.key_length)))


def make_keys(settings: KVSettings) -> dict[str, int]:
    """N distinct keys → a permutation of 1..N, in a fixed random order. No key is a prefix of another, so a
    key ends where an operator or '=' follows and nowhere else (the anchor reads keys character by character)."""
    rng = random.Random(f"kv/keys/{settings.seed}")
    keys: list[str] = []
    taken: set[str] = set()
    while len(keys) < settings.num_keys:
        key = random_word(rng, settings)
        prefixes = {key[:i] for i in range(1, len(key) + 1)}
        if key in taken or any(k.startswith(key) or k in prefixes for k in keys):
            continue
        keys.append(key)
        taken.add(key)
    values = list(range(1, settings.num_keys + 1))
    rng.shuffle(values)
    return dict(zip(keys, values))


def expression(rng: random.Random, operands: Sequence[str], count: tuple[int, int], operators: str) -> str:
    """A random expression of `count` (min, max) operands joined by random operators, e.g. 'ab+cd-ef'."""
    n = rng.randint(*count)
    out = rng.choice(operands)
    for _ in range(n - 1):
        out += rng.choice(operators) + rng.choice(operands)
    return out


def evaluate(expr: str) -> int:
    """The integer value of an expression of non-negative integers (written normally) and + - *, with *
    binding tighter than + and -."""
    total, term, sign, number = 0, 1, 1, ""
    for ch in expr + "+":
        if ch.isdigit():
            number += ch
            continue
        if not number:
            raise ValueError(f"not an expression of integers: {expr!r}")
        term *= int(number)
        number = ""
        if ch in "+-":
            total += sign * term
            sign, term = (1 if ch == "+" else -1), 1
        elif ch != "*":
            raise ValueError(f"unexpected character {ch!r} in {expr!r}")
    return total


def split_terms(expr: str, operators: str) -> tuple[list[str], list[str]]:
    """'ab+cd-ef' → (['ab', 'cd', 'ef'], ['+', '-'])."""
    terms, ops, cur = [], [], ""
    for ch in expr:
        if ch in operators:
            terms.append(cur)
            ops.append(ch)
            cur = ""
        else:
            cur += ch
    return terms + [cur], ops


def join_terms(terms: Sequence[str], ops: Sequence[str]) -> str:
    return terms[0] + "".join(o + t for o, t in zip(ops, terms[1:]))


def number(n: int, little_endian: bool, width: int = 0) -> str:
    """An integer as written in the data: '-' then its digits, zero-padded to `width`, least-significant
    first when little-endian (17 → '710' with width 3)."""
    digits = str(abs(n)).zfill(width)
    return ("-" if n < 0 else "") + (digits[::-1] if little_endian else digits)


def width(settings: KVSettings) -> int:
    """The digits of the largest magnitude an expression can reach (0 = no padding)."""
    if not settings.fixed_width:
        return 0
    n, most = settings.num_keys, settings.operands[1]
    biggest = n ** most if "*" in settings.operators else n * most
    return len(str(biggest))


def substitute(expr: str, kv: dict[str, int], operators: str, little_endian: bool = False, pad: int = 0) -> str:
    """Replace every key of `expr` by its value ('ab+cd' → '12+7')."""
    terms, ops = split_terms(expr, operators)
    return join_terms([number(kv[t], little_endian, pad) for t in terms], ops)


def value(expr: str, kv: dict[str, int] | None, operators: str) -> int:
    """The value of an expression of keys (`kv` given) or of normally written integers."""
    terms, ops = split_terms(expr, operators)
    return evaluate(join_terms([str(kv[t]) if kv is not None else t for t in terms], ops))


def _rows(make: Callable[[random.Random], dict[str, str]], n: int, seed: str, exclude: set[str],
          prefix: str, distinct: bool) -> list[dict[str, str]]:
    """n rows whose sources are not in `exclude`. Test sets are `distinct` (each source once, added to
    `exclude` so that later sets avoid them); training sets may repeat an expression, as small settings allow
    only a few thousand."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    misses = 0
    while len(rows) < n:
        row = make(rng)
        src = row["src"]
        if src in exclude:
            misses += 1
            if misses > 50 * n + 1000:
                raise ValueError(f"{prefix}: only {len(rows)} expressions of {n} asked for could be drawn outside "
                                 f"the test sets; the settings allow too few (more keys or operands, fewer rows)")
            continue
        if distinct:
            exclude.add(src)
        rows.append({"id": f"{prefix}-{len(rows):06d}", **row})
    return rows


def choose_compose_keys(kv: dict[str, int], settings: KVSettings) -> list[str]:
    """The keys composition trains on, `compose_fraction` of them, in `kv`'s order: the first ones
    (`cover_digits` off), or of `COVER_DRAWS` random draws the first whose written values use the most
    distinct (place, digit) pairs."""
    keys = list(kv)
    n = round(len(keys) * settings.compose_fraction)
    if not settings.cover_digits:
        return keys[:n]
    le, w = settings.little_endian, width(settings)

    def coverage(chosen: list[str]) -> int:
        return len({(i, c) for k in chosen for i, c in enumerate(number(kv[k], le, w))})

    rng = random.Random(f"kv/compose/{settings.seed}")
    best = set(max((rng.sample(keys, n) for _ in range(COVER_DRAWS)), key=coverage))  # max keeps the first best
    return [k for k in keys if k in best]


def build(settings: KVSettings) -> dict[str, list[dict]]:
    """All files' rows by relative path (without writing anything)."""
    settings.check()
    kv = make_keys(settings)
    keys = list(kv)
    compose_keys = choose_compose_keys(kv, settings)
    composing = set(compose_keys)
    held_out = [k for k in keys if k not in composing]
    numbers = [str(v) for v in range(1, settings.num_keys + 1)]
    ops, s, le, w = settings.operators, settings.seed, settings.little_endian, width(settings)

    def draw(r: random.Random, pool: list[str], count: tuple[int, int], table: dict[str, int] | None) -> str:
        while True:  # rejection keeps the operand and operator choices uniform among the allowed expressions
            e = expression(r, pool, count, ops)
            if not settings.non_negative or value(e, table, ops) >= 0:
                return e

    def subs(pool: list[str], count: tuple[int, int]) -> Callable[[random.Random], dict[str, str]]:
        def make(r: random.Random) -> dict[str, str]:
            e = expression(r, pool, count, ops)
            return {"src": e, "tgt": substitute(e, kv, ops, le, w)}
        return make

    def arith(r: random.Random) -> dict[str, str]:
        e = draw(r, numbers, settings.operands, None)
        terms, signs = split_terms(e, ops)
        src = join_terms([number(int(t), le, w) for t in terms], signs)
        if r.random() < settings.arithmetic_prefix:  # random letters, not keys: they say nothing of the numbers
            src = join_terms([random_word(r, settings) for _ in terms], [r.choice(ops) for _ in signs]) + "=" + src
        return {"src": src, "tgt": number(value(e, None, ops), le, w)}

    def kv_arith(pool: list[str]) -> Callable[[random.Random], dict[str, str]]:
        def make(r: random.Random) -> dict[str, str]:
            e = draw(r, pool, settings.operands, kv)
            # "values": the expression with its keys' values, for targets that show the work (speech_calm.text.kv)
            return {"src": e, "tgt": number(value(e, kv, ops), le, w), "values": substitute(e, kv, ops, le, w)}
        return make

    out: dict[str, list[dict]] = {
        "keys.jsonl": [{"key": k, "value": v, "compose": k in composing} for k, v in kv.items()]
    }
    # test sets first, so that train sets are drawn around them (no test expression is ever trained on)
    n = settings.test_rows
    seen: set[str] = set()
    lo, hi = settings.substitution_operands
    # single keys stay out of the test set: they are the mapping itself, which m_A must see for every key
    out["substitution/test.jsonl"] = _rows(subs(keys, (max(2, lo), max(2, hi))), n, f"kv/sub/test/{s}", seen,
                                           "sub-test", True)
    out["substitution/train.jsonl"] = _rows(subs(keys, (lo, hi)), settings.substitution_train, f"kv/sub/train/{s}", seen,
                                            "sub-train", False)
    seen = set()
    out["arithmetic/test.jsonl"] = _rows(arith, n, f"kv/ar/test/{s}", seen, "ar-test", True)
    out["arithmetic/train.jsonl"] = _rows(arith, settings.arithmetic_train, f"kv/ar/train/{s}", seen, "ar-train",
                                          False)
    seen = set()
    out["kv_arithmetic/test.jsonl"] = _rows(kv_arith(held_out), n, f"kv/kva/test/{s}", seen, "kva-test", True)
    # dev (progress during training) is small: it takes its expressions away from the composition keys' few
    out["kv_arithmetic/dev.jsonl"] = _rows(kv_arith(compose_keys), max(1, n // 5), f"kv/kva/dev/{s}", seen,
                                           "kva-dev", True)
    out["kv_arithmetic/train.jsonl"] = _rows(kv_arith(compose_keys), settings.kv_arithmetic_train,
                                             f"kv/kva/train/{s}", seen, "kva-train", False)
    return out


def prepare(out_dir: str | Path, settings: KVSettings = KVSettings()) -> dict:
    """Write the datasets into `out_dir` (skipped when it already holds data of the same settings); returns
    the stats."""
    out = Path(out_dir)
    stats_path = out / "stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        if stats.get("digest") == settings.digest():
            return stats
        raise ValueError(f"{out} holds KV data made with other settings (see {stats_path}); use another --out "
                         f"or remove it")
    files = build(settings)
    for rel, rows in files.items():
        with atomic_write(out / rel) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    stats = {"digest": settings.digest(), "settings": asdict(settings),
             "rows": {rel: len(rows) for rel, rows in files.items()},
             "compose_keys": sum(r["compose"] for r in files["keys.jsonl"])}
    text = json.dumps(stats, indent=1)
    with atomic_write(stats_path) as tmp:  # written last: its presence means the directory is complete
        tmp.write_text(text + "\n", encoding="utf-8")
    return json.loads(text)  # as a later call reads it back (tuples become lists)
