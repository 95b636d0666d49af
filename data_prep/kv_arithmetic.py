"""python data_prep/kv_arithmetic.py --out DIR [--num-keys N ...]: the key-value arithmetic data of the CALM paper
(§4.1, Table 1), scaled to a CPU.

    python data_prep/kv_arithmetic.py --out data/kv                       # the recipe's defaults
    python data_prep/kv_arithmetic.py --out data/kv_small --num-keys 60 --kv-arithmetic-train 2000

What the three datasets hold and how they are drawn: `speech_calm.text.kv_data` (the recipe's kv_data stage
writes the same files).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python data_prep/kv_arithmetic.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speech_calm.text.kv_data import KVSettings, prepare


def _pair(text: str) -> tuple[int, int]:
    a, _, b = text.partition(",")
    return int(a), int(b or a)


def main(argv: list[str] | None = None) -> int:
    d = KVSettings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-keys", type=int, default=d.num_keys)
    p.add_argument("--key-length", type=_pair, default=d.key_length, help="MIN,MAX characters")
    p.add_argument("--alphabet", default=d.alphabet)
    p.add_argument("--operands", type=_pair, default=d.operands, help="MIN,MAX operands (arithmetic)")
    p.add_argument("--substitution-operands", type=_pair, default=d.substitution_operands)
    p.add_argument("--operators", default=d.operators)
    p.add_argument("--non-negative", action=argparse.BooleanOptionalAction, default=d.non_negative)
    p.add_argument("--little-endian", action=argparse.BooleanOptionalAction, default=d.little_endian)
    p.add_argument("--fixed-width", action=argparse.BooleanOptionalAction, default=d.fixed_width)
    p.add_argument("--compose-fraction", type=float, default=d.compose_fraction)
    p.add_argument("--cover-digits", action=argparse.BooleanOptionalAction, default=d.cover_digits,
                   help="pick composition keys whose values use every digit at every place (as far as possible)")
    p.add_argument("--substitution-train", type=int, default=d.substitution_train)
    p.add_argument("--arithmetic-train", type=int, default=d.arithmetic_train)
    p.add_argument("--kv-arithmetic-train", type=int, default=d.kv_arithmetic_train)
    p.add_argument("--arithmetic-prefix", type=float, default=d.arithmetic_prefix,
                   help="share of Numeric-Arithmetic rows behind a prefix of random letters")
    p.add_argument("--test-rows", type=int, default=d.test_rows)
    p.add_argument("--seed", type=int, default=d.seed)
    a = p.parse_args(argv)
    settings = KVSettings(
        num_keys=a.num_keys, key_length=a.key_length, alphabet=a.alphabet, operands=a.operands,
        substitution_operands=a.substitution_operands, operators=a.operators, non_negative=a.non_negative,
        little_endian=a.little_endian, fixed_width=a.fixed_width, compose_fraction=a.compose_fraction,
        cover_digits=a.cover_digits, substitution_train=a.substitution_train, arithmetic_train=a.arithmetic_train,
        kv_arithmetic_train=a.kv_arithmetic_train, arithmetic_prefix=a.arithmetic_prefix, test_rows=a.test_rows,
        seed=a.seed,
    )
    try:
        stats = prepare(a.out, settings)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats["rows"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
